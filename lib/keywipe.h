/* keywipe.h — wiping what private-key operations leave behind (keywipe.c). */
#pragma once

/* Have every block OpenSSL frees wiped first. Only possible before OpenSSL's first
 * allocation; a no-op after (keys are then as protected as the secure heap makes them). */
void keywipe_on_free(void);
/* After a private-key operation: wipe 64 KiB of stack below the caller and zero the vector
 * registers (ZMM0-15 with vzeroall, ZMM16-31 where AVX-512 has them). */
void keywipe_stack(void);
