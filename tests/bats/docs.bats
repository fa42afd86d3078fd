#!/usr/bin/env bats
# docs.bats — the project's own docs are the ones cited: every section of docs/ARCHITECTURE.md
# that a file names exists, and nothing cites a document outside the repository.
#
# Reads files only.

ROOT=${TCPMAP_ROOT:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}

@test "docs: every docs/ARCHITECTURE.md section the tree cites is a heading there" {
	run python3 - "$ROOT" <<'EOF'
import os, re, sys
root = sys.argv[1]
heads = {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", open(f"{root}/docs/ARCHITECTURE.md").read(), re.M)}
cited, bad = 0, []
for top in ("lib", "bin", "man", "bench", "tests", "units", "scripts", "debian"):
    for d, _, files in os.walk(f"{root}/{top}"):
        for f in files:
            p = os.path.join(d, f)
            try:
                text = open(p, encoding="utf-8").read()
            except (UnicodeDecodeError, OSError):
                continue
            # a citation may wrap: join comment lines into one run of words
            flat = re.sub(r"\s*\n\s*(?:\*|#|//|\.\\\")?\s*", " ", text)
            for m in re.finditer(r"ARCHITECTURE\.md,\s*['\"]([^'\"]+)['\"]", flat):
                cited += 1
                if m.group(1).strip() not in heads:
                    bad.append(f"{os.path.relpath(p, root)}: '{m.group(1)}'")
print(f"{cited} citations of sections, {len(heads)} headings")
for b in bad:
    print("no such section:", b)
sys.exit(1 if bad or cited == 0 else 0)
EOF
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "docs: nothing cites the design card outside the repository" {
	run grep -rIl --exclude=docs.bats "DESIGN\.md" "$ROOT/lib" "$ROOT/bin" "$ROOT/man" \
		"$ROOT/bench" "$ROOT/tests/bats" "$ROOT/tests/lib" "$ROOT/tests/unit" "$ROOT/units" \
		"$ROOT/README.md" "$ROOT/docs"
	echo "$output"
	# grep exits 1 when it finds nothing, 0 when it does
	[ "$status" -eq 1 ]
}
