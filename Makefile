# tcpmap — see README.md. `make`, `make run`, `make check [SAN=1]`, `make install`, `make bench`, `make fuzz`,
# `make soak`.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/tcpmap
SYSCONFDIR ?= /etc
UNITDIR ?= $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
GENERATORDIR ?= $(shell pkg-config --variable=systemdsystemgeneratordir systemd 2>/dev/null || echo /lib/systemd/system-generators)

comma := ,
SAN ?= 0
CC ?= cc
VERSION := 0.1.0

ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else
BUILD ?= build
SANFLAGS :=
OPT := -O2
endif

PKGS := libsystemd openssl yaml-0.1
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# tcpmapd itself does not link OpenSSL: tcpmap-tls.so does, loaded only for TLS configs
CORE_LIBS = $(shell pkg-config --libs libsystemd yaml-0.1 2>/dev/null)
TLS_LIBS = $(shell pkg-config --libs openssl 2>/dev/null)
# found by tcpmapd at ../lib/tcpmap from its own directory (lib/tlsload.c)
TLSMODDIR = $(patsubst %/,%,$(dir $(SBINDIR)))/lib/tcpmap

CFLAGS ?= $(OPT) -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -DTCPMAP_VERSION='"$(VERSION)"' \
	-DTCPMAP_SYSCONFDIR='"$(SYSCONFDIR)"' -DTCPMAP_UNITDIR='"$(UNITDIR)"' -Ilib $(PKG_CFLAGS) $(SANFLAGS) -MMD -MP
LDFLAGS += $(SANFLAGS)
LDLIBS += $(PKG_LIBS) -lpthread

LIB_SRCS := $(sort $(wildcard lib/*.c))
TLS_SRCS := lib/tls.c lib/tlssession.c lib/tlsflight.c lib/tlsgate.c lib/tlsrelay.c lib/tlsticket.c lib/keywipe.c
LOADER_SRCS := lib/tlsload.c
CORE_SRCS := $(filter-out $(TLS_SRCS) $(LOADER_SRCS),$(LIB_SRCS))
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/%.o)
TLS_OBJS := $(TLS_SRCS:%.c=$(BUILD)/%.o)
TLS_PIC_OBJS := $(TLS_SRCS:%.c=$(BUILD)/pic/%.o)
BINS := $(BUILD)/tcpmapd $(BUILD)/tcpmapctl $(BUILD)/tcpmap-tls.so $(BUILD)/tcpmap-generator \
	$(BUILD)/tcpmap-spawner
UNIT_SRCS := $(sort $(wildcard tests/unit/test-*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TESTLIB_SRCS := $(sort $(wildcard tests/unit/helpers-*.c))
TESTLIB_OBJS := $(TESTLIB_SRCS:%.c=$(BUILD)/%.o)

# keep intermediate objects: rebuilding them is what takes time
.SECONDARY:

.PHONY: all deps run check unit bats fuzz fuzz-build bench install uninstall clean format format-check deb \
	mutate soak

all: $(BINS)

deps:
	@./scripts/deps.sh

$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/pic/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -c -o $@ $<

$(BUILD)/libtcpmap.a: $(CORE_OBJS)
	$(AR) rcs $@ $^

$(BUILD)/libtcpmap-tls.a: $(TLS_OBJS)
	$(AR) rcs $@ $^

# The few core functions lib/tls.c calls are exported from tcpmapd for the module.
TLS_IMPORTS := diag_vadd,netaddr_is_literal,route_host_matches,strv_push,strv_free
TLS_IMPORTS := $(TLS_IMPORTS),model_tlscontext_for_host,model_tlscontext_covers
TLS_IMPORTS := $(TLS_IMPORTS),ticketkeys_now,ticketkeys_issue,ticketkeys_find
$(BUILD)/tcpmap-tls.so: $(TLS_PIC_OBJS)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(TLS_LIBS) -lpthread

$(BUILD)/tcpmapd: $(BUILD)/bin/tcpmapd.o $(BUILD)/lib/tlsload.o $(BUILD)/libtcpmap.a | $(BUILD)/tcpmap-tls.so
	$(CC) $(LDFLAGS) -Wl,--export-dynamic-symbol=$(subst $(comma),$(comma)--export-dynamic-symbol=,$(TLS_IMPORTS)) \
		-o $@ $(filter %.o %.a,$^) $(CORE_LIBS) -lpthread

# The relay spawner (bin/tcpmap-spawner.c): libc alone, statically, so that each relay it
# forks copies a few pages, not libsystemd's and libyaml's (issue 20). The archive gives it
# only the objects it calls. A sanitizer build links it dynamically: ASan has no -static.
SPAWNER_STATIC := $(if $(filter 1,$(SAN)),,-static)
$(BUILD)/tcpmap-spawner: $(BUILD)/bin/tcpmap-spawner.o $(BUILD)/libtcpmap.a
	$(CC) $(LDFLAGS) $(SPAWNER_STATIC) -o $@ $^ -lpthread

# On the boot path: the config loader alone, no OpenSSL (bin/tcpmap-generator.c).
$(BUILD)/tcpmap-generator: $(BUILD)/bin/tcpmap-generator.o $(BUILD)/libtcpmap.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CORE_LIBS) -lpthread

$(BUILD)/tcpmapctl: $(BUILD)/bin/tcpmapctl.o $(BUILD)/libtcpmap-tls.a $(BUILD)/libtcpmap.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# a group: the core calls the TLS module (conn.c) and the module calls the core back
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJS) $(BUILD)/libtcpmap-tls.a $(BUILD)/libtcpmap.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(TEST_LDFLAGS) -o $@ $(filter %.o,$^) -Wl,--start-group $(filter %.a,$^) \
		-Wl,--end-group $(LDLIBS) -lcmocka

# This test fails allocations one by one: the library's calls to the allocator go through
# its hooks. Only this binary is linked so.
ALLOC_HOOKED := malloc calloc realloc strdup strndup asprintf vasprintf
$(BUILD)/tests/test-config-alloc: TEST_LDFLAGS = $(foreach f,$(ALLOC_HOOKED),-Wl,--wrap=$(f))
# This one answers name lookups itself, slowly when the test says so.
$(BUILD)/tests/test-resolve: TEST_LDFLAGS = -Wl,--wrap=getaddrinfo

# The main job: tcpmapd in the foreground on conf/tcpmap.yaml with a demo upstream beside it.
run: deps all
	./scripts/run-demo.sh $(BUILD)

check: deps all $(UNIT_BINS) fuzz-build
	./tests/run.sh $(BUILD) $(SAN)

unit: all $(UNIT_BINS)
	./tests/run.sh $(BUILD) $(SAN) unit

bats: all
	./tests/run.sh $(BUILD) $(SAN) bats

# The soak (tests/soak/soak.sh): everything at once under the private systemd, with seeded
# faults, for SOAK_SECONDS (an hour by default; `make check` runs 60 s of it through
# tests/bats/soak.bats). SOAK_SEED=N repeats a run; the report is in $(BUILD)/soak/.
SOAK_SECONDS ?= 3600
soak: all
	SOAK_SECONDS=$(SOAK_SECONDS) ./tests/soak/soak.sh $(BUILD)

# Mutation check (tests/mutate/mutants.list): each mutant applied to a scratch copy, rebuilt,
# and run against the tests that must catch it. Slow, so not in `make check`; MUTANTS="3 7"
# runs only those.
mutate: all $(UNIT_BINS)
	BUILD=$(BUILD) ./scripts/mutate.sh $(MUTANTS)

# libFuzzer harnesses: clang, with ASan+UBSan, over the library sources.
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz-*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -DTCPMAP_VERSION='"$(VERSION)"' \
	-DTCPMAP_SYSCONFDIR='"$(SYSCONFDIR)"' -Ilib $(PKG_CFLAGS) \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined -Wall -Wextra -Werror
FUZZ_LIB_OBJS := $(filter-out $(LOADER_SRCS),$(LIB_SRCS))
FUZZ_LIB_OBJS := $(FUZZ_LIB_OBJS:lib/%.c=build-fuzz/lib/%.o)
FUZZ_SECONDS ?= 60

fuzz-build: $(FUZZ_BINS)

# the library once, instrumented for coverage; each harness links against it
build-fuzz/lib/%.o: lib/%.c $(wildcard lib/*.h) Makefile
	@mkdir -p build-fuzz/lib
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build-fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJS)
	@mkdir -p build-fuzz
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) $(PKG_LIBS) -lpthread

fuzz: fuzz-build
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build-fuzz/corpus-$$n; \
		echo "== $$n for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus-$$n tests/fuzz/corpus/$${n#fuzz-} || exit 1; done

bench: all
	./scripts/deps.sh bench
	./bench/run.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/tcpmap
	install -m 0755 $(BUILD)/tcpmapd $(DESTDIR)$(SBINDIR)/tcpmapd
	install -m 0755 $(BUILD)/tcpmapctl $(DESTDIR)$(BINDIR)/tcpmapctl
	install -d $(DESTDIR)$(GENERATORDIR)
	install -m 0755 $(BUILD)/tcpmap-generator $(DESTDIR)$(GENERATORDIR)/tcpmap-generator
	install -d $(DESTDIR)$(TLSMODDIR)
	install -m 0644 $(BUILD)/tcpmap-tls.so $(DESTDIR)$(TLSMODDIR)/tcpmap-tls.so
	install -m 0755 $(BUILD)/tcpmap-spawner $(DESTDIR)$(TLSMODDIR)/tcpmap-spawner
	for u in units/*.socket units/*.service units/*.target; do [ -e "$$u" ] || continue; \
		sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		"$$u" > $(DESTDIR)$(UNITDIR)/$$(basename $$u); chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	for m in man/*.[1-8]; do [ -e "$$m" ] || continue; s=$${m##*.}; \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	install -d $(DESTDIR)$(DOCDIR)/examples
	install -m 0644 units/tcpmap-inetd-light.conf $(DESTDIR)$(DOCDIR)/examples/
	# The example config, inert until uncommented: its YAML behind "# ", its prose behind "## ",
	# so removing "# " from the start of every line gives valid YAML with the prose kept.
	[ -e $(DESTDIR)$(SYSCONFDIR)/tcpmap/tcpmap.yaml ] || { \
		printf '%s\n' "## $(SYSCONFDIR)/tcpmap/tcpmap.yaml: the example that \`make install\` wrote. Every YAML" \
		"## line is commented out with \"# \", so it configures nothing; prose starts with \"## \"." \
		"## Uncomment it: sed -i 's/^# //' $(SYSCONFDIR)/tcpmap/tcpmap.yaml" \
		"## then start an echo upstream on 127.0.0.1:9000, or point service: elsewhere." "##"; \
		sed -e 's/^#/##/' -e 's/^\([^#]\)/# \1/' conf/tcpmap.yaml; \
	} > $(DESTDIR)$(SYSCONFDIR)/tcpmap/tcpmap.yaml

# The Debian package, built with debhelper from a copy of the tree (dpkg-buildpackage writes
# beside the source), into $(BUILD)/deb/; lintian must find no error in it.
# DEB_VERSION=V builds the package as version V (an upgrade to test against), by adding a
# changelog entry to the copy.
DEB_DIR ?= $(BUILD)/deb
DEB_VERSION ?=
deb:
	./scripts/deps.sh
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	tar -c --exclude='./build' --exclude='./build-*' --exclude=./.git \
		--exclude=./bench/out . | tar -x -C $(DEB_DIR)/src
	if [ -n "$(DEB_VERSION)" ]; then { printf 'tcpmap (%s) unstable; urgency=medium\n\n  * Rebuilt as %s.\n\n -- %s  %s\n\n' \
		"$(DEB_VERSION)" "$(DEB_VERSION)" "$$(sed -n 's/^Maintainer: //p' debian/control)" "$$(date -R)"; \
		cat debian/changelog; } > $(DEB_DIR)/src/debian/changelog; fi
	cd $(DEB_DIR)/src && DEB_BUILD_OPTIONS="parallel=$$(nproc) $$DEB_BUILD_OPTIONS" dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
		{ tail -30 ../build.log; exit 1; }
	lintian --fail-on error $(DEB_DIR)/tcpmap_*.deb
	@ls $(DEB_DIR)/*.deb

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tcpmapd $(DESTDIR)$(BINDIR)/tcpmapctl $(DESTDIR)$(TLSMODDIR)/tcpmap-tls.so \
		$(DESTDIR)$(TLSMODDIR)/tcpmap-spawner \
		$(DESTDIR)$(GENERATORDIR)/tcpmap-generator
	-rmdir $(DESTDIR)$(TLSMODDIR) 2>/dev/null
	for u in units/*.socket units/*.service units/*.target; do [ -e "$$u" ] || continue; \
		rm -f $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	for m in man/*.[1-8]; do [ -e "$$m" ] || continue; s=$${m##*.}; \
		rm -f $(DESTDIR)$(MANDIR)/man$$s/$$(basename $$m); done
	rm -f $(DESTDIR)$(DOCDIR)/examples/tcpmap-inetd-light.conf
	-rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null
	@echo "left $(DESTDIR)$(SYSCONFDIR)/tcpmap in place (it may hold your config)"

format:
	clang-format -i lib/*.[ch] bin/*.c tests/unit/*.c tests/fuzz/*.c

format-check:
	clang-format --dry-run --Werror lib/*.[ch] bin/*.c tests/unit/*.c tests/fuzz/*.c

clean:
	rm -rf build build-san build-fuzz

-include $(CORE_OBJS:.o=.d) $(TLS_OBJS:.o=.d) $(TLS_PIC_OBJS:.o=.d) $(BUILD)/lib/tlsload.d \
	$(BUILD)/bin/tcpmapd.d $(BUILD)/bin/tcpmapctl.d $(BUILD)/bin/tcpmap-generator.d \
	$(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%.d)
