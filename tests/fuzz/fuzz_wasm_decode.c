/* fuzz_wasm_decode.c - libFuzzer target: decode + validate (+ lower) an
 * arbitrary WebAssembly binary.  Must never crash, hang or leak. */
#include "payload/wasm/wasm.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    wasm_module *m = wasm_module_load(data, size, err, sizeof err, NULL);
    wasm_module_free(m);
    return 0;
}
