/* guard: refuses every request that contains a configured word.
 *
 *   [plugins.guard]
 *   word = "forbidden"
 *
 * Plain C for wasm32 with no libc: build it with `bash scripts/build-plugins.sh` (Debian's
 * clang and lld), or by hand:
 *
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o guard.wasm guard.c
 *
 * The ABI (see the README): the host calls alloc(len) once per call and writes the input
 * JSON there, then calls the hook with (ptr, len); a hook returns 0 ("no change") or
 * (ptr << 32) | len of its answer JSON. */

typedef unsigned int u32;
typedef unsigned long long u64;

#define EXPORT(name) __attribute__((export_name(name)))

extern unsigned char __heap_base;

static const char MANIFEST[] =
    "{\"name\":\"guard\",\"version\":\"1.0.0\",\"api\":1,\"hooks\":[\"on_request\"],"
    "\"config_schema\":{\"type\":\"object\",\"properties\":{\"word\":{\"type\":\"string\","
    "\"minLength\":1,\"maxLength\":255}},\"required\":[\"word\"],\"additionalProperties\":false}}";

static const char REFUSAL[] =
    "{\"reject\":{\"status\":400,\"message\":\"refused by the guard plugin: the request "
    "contains a word it does not allow\"}}";

static const char PREFIX[] = "{\"word\":\"";

static char word[256];
static u32 word_len;

static u64 pack(const void *p, u32 len) { return ((u64)(u32)p << 32) | len; }

static int same(const char *a, const char *b, u32 n) {
    for (u32 i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* The heap starts over with each call: nothing is kept between calls. */
EXPORT("alloc") void *alloc(u32 len) {
    u32 base = (u32)&__heap_base;
    u32 need = base + len + 1024;
    u32 have = __builtin_wasm_memory_size(0) * 65536u;
    if (need > have) {
        u32 pages = (need - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (u32)-1) return 0;
    }
    return &__heap_base;
}

EXPORT("manifest") u64 manifest(void) { return pack(MANIFEST, sizeof MANIFEST - 1); }

/* The configuration is exactly {"word":"<word>"} (the host writes compact JSON). */
EXPORT("init") int init(const char *config, u32 len) {
    u32 prefix = sizeof PREFIX - 1;
    if (len < prefix + 3 || !same(config, PREFIX, prefix)) return 1;
    u32 n = len - prefix - 2;
    if (n == 0 || n >= sizeof word) return 1;
    for (u32 i = 0; i < n; i++) word[i] = config[prefix + i];
    word_len = n;
    return 0;
}

EXPORT("on_request") u64 on_request(const char *input, u32 len) {
    if (word_len == 0 || len < word_len) return 0;
    for (u32 i = 0; i + word_len <= len; i++)
        if (same(input + i, word, word_len)) return pack(REFUSAL, sizeof REFUSAL - 1);
    return 0;
}
