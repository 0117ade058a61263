/* json_decode.c - JSON text straight into Lua values (json_decode in json.h).
 * A recursive-descent parser that accepts exactly what jansson's
 * json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL) accepts and pushes the values
 * json.c used to copy out of jansson's tree, without building the tree.  When
 * the text is refused, jansson reads it again to describe why, so messages
 * and positions are jansson's; fuzz/json_oracle.c holds the two together. */
#include "base/json.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>

/* jansson's JSON_PARSER_MAX_DEPTH: a value deeper than this (the top-level
 * value is at depth 1, scalars count) is refused. */
#define MAX_DEPTH 2048

/* Values of an array (pairs of an object) wait on the Lua stack until the
 * container ends, so that its table is made once at its final size; past
 * this many they are moved into the table, so a long array does not use
 * more Lua stack than this per level of nesting. */
#define CHUNK 32

/* Stack slots a container needs beyond its pending values: the table, a
 * key and value copied onto the top, and a luaL_Buffer's box. */
#define SLACK 4

enum { DECODE_OK, DECODE_INVALID, DECODE_NO_STACK };

typedef struct {
    const unsigned char *p, *end;
    int array_mt;  /* Stack index of the array metatable */
    int status;
} parser;

static int parse_value(lua_State *L, parser *ps, int depth);

/* Bytes that stand for themselves in a string: printable ASCII except the
 * quote and the backslash.  Control characters and bytes >= 0x80 take the
 * careful path. */
static const unsigned char plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int invalid(parser *ps) {
    ps->status = DECODE_INVALID;
    return -1;
}

static int is_digit(unsigned c) {
    return c - '0' < 10;
}

static int is_alpha(unsigned c) {
    return (c | 0x20) - 'a' < 26;
}

static void skip_space(parser *ps) {
    const unsigned char *p = ps->p;

    while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    ps->p = p;
}

/* After a number or a literal jansson puts back the byte that ended it; a
 * NUL put back is lost, as its stream takes NUL for "nothing buffered".  So
 * "1\0" decodes as 1 and "[true\0]" as [true], and so must they here. */
static void skip_lost_nul(parser *ps) {
    if (ps->p < ps->end && *ps->p == '\0') ps->p++;
}

/* Length of the UTF-8 sequence at p, or 0 if it is not a valid one
 * (overlong, a surrogate, beyond U+10FFFF, or cut short). */
static size_t utf8_length(const unsigned char *p, const unsigned char *end) {
    size_t n = (size_t)(end - p);
    unsigned c = p[0];

    if (c < 0xc2) return 0;
    if (c < 0xe0) return n >= 2 && p[1] >> 6 == 2 ? 2 : 0;
    if (c < 0xf0) {
        if (n < 3 || p[1] >> 6 != 2 || p[2] >> 6 != 2) return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)) return 0;
        return 3;
    }
    if (c < 0xf5) {
        if (n < 4 || p[1] >> 6 != 2 || p[2] >> 6 != 2 || p[3] >> 6 != 2) return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)) return 0;
        return 4;
    }
    return 0;
}

/* The 4 hex digits at p, or -1. */
static long hex4(const unsigned char *p, const unsigned char *end) {
    long v = 0;

    if (end - p < 4) return -1;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        if (is_digit(c)) v = v * 16 + (c - '0');
        else if ((c | 0x20) - 'a' < 6) v = v * 16 + ((c | 0x20) - 'a' + 10);
        else return -1;
    }
    return v;
}

/* Check the string body from p (inside the quotes) up to its closing quote,
 * which is returned, or NULL if the string is invalid.  *escaped tells
 * whether it has escapes, *nul whether one of them is \u0000. */
static const unsigned char *check_string(const unsigned char *p, const unsigned char *end,
                                         int *escaped, int *nul) {
    while (p < end) {
        unsigned c = *p;
        size_t n;
        long cp;

        if (plain[c]) {
            p++;
        } else if (c == '"') {
            return p;
        } else if (c == '\\') {
            if (end - p < 2) return NULL;
            *escaped = 1;
            if (p[1] != 'u') {
                if (!p[1] || !strchr("\"\\/bfnrt", p[1])) return NULL;
                p += 2;
                continue;
            }
            if ((cp = hex4(p + 2, end)) < 0) return NULL;
            p += 6;
            if (cp == 0) *nul = 1;
            if (cp >= 0xdc00 && cp <= 0xdfff) return NULL;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* A high surrogate must be followed by a low one. */
                if (end - p < 2 || p[0] != '\\' || p[1] != 'u') return NULL;
                if ((cp = hex4(p + 2, end)) < 0xdc00 || cp > 0xdfff) return NULL;
                p += 6;
            }
        } else if (c < 0x20) {
            return NULL;
        } else if ((n = utf8_length(p, end))) {
            p += n;
        } else {
            return NULL;
        }
    }
    return NULL;
}

static char *put_utf8(char *out, unsigned long cp) {
    if (cp < 0x80) {
        *out++ = (char)cp;
    } else if (cp < 0x800) {
        *out++ = (char)(0xc0 | cp >> 6);
        *out++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *out++ = (char)(0xe0 | cp >> 12);
        *out++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *out++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *out++ = (char)(0xf0 | cp >> 18);
        *out++ = (char)(0x80 | (cp >> 12 & 0x3f));
        *out++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *out++ = (char)(0x80 | (cp & 0x3f));
    }
    return out;
}

/* Push the unescaped text of the checked string body p..q.  It is never
 * longer than its source, so one luaL_Buffer of that size holds it.  Kept
 * out of line: the buffer is a kilobyte of C stack, which would otherwise
 * sit in every frame of the recursion, 2048 deep. */
__attribute__((noinline))
static void push_unescaped(lua_State *L, const unsigned char *p, const unsigned char *q) {
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (size_t)(q - p)), *start = out;

    while (p < q) {
        unsigned long cp;

        if (*p != '\\') {
            *out++ = (char)*p++;
            continue;
        }
        switch (p[1]) {
        case 'b': *out++ = '\b'; break;
        case 'f': *out++ = '\f'; break;
        case 'n': *out++ = '\n'; break;
        case 'r': *out++ = '\r'; break;
        case 't': *out++ = '\t'; break;
        case 'u':
            cp = (unsigned long)hex4(p + 2, q);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned long)hex4(p + 8, q) - 0xdc00);
                p += 6;
            }
            out = put_utf8(out, cp);
            p += 6;
            continue;
        default: *out++ = (char)p[1]; break; /* " \ / */
        }
        p += 2;
    }
    luaL_pushresultsize(&b, (size_t)(out - start));
}

/* Push the string whose opening quote is at ps->p.  Object keys may not
 * hold NUL (jansson refuses them even with JSON_ALLOW_NUL). */
static int push_string(lua_State *L, parser *ps, int is_key) {
    const unsigned char *s = ps->p + 1, *p = s, *end = ps->end;
    int escaped = 0, nul = 0;

    while (p < end && plain[*p]) p++;
    if (p < end && *p == '"') {
        lua_pushlstring(L, (const char *)s, (size_t)(p - s));
    } else {
        if (!(p = check_string(p, end, &escaped, &nul)) || (nul && is_key)) return invalid(ps);
        if (escaped)
            push_unescaped(L, s, p);
        else
            lua_pushlstring(L, (const char *)s, (size_t)(p - s));
    }
    ps->p = p + 1;
    return 0;
}

/* Powers of ten that doubles hold exactly. */
static const double exact_pow10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* strtod on the number text p..q, as jansson does, failing on overflow.
 * The text is copied into a Lua string for its terminating NUL, so that
 * running out of memory raises like any other allocation here. */
static int slow_real(lua_State *L, const unsigned char *p, const unsigned char *q, double *d) {
    const char *text = lua_pushlstring(L, (const char *)p, (size_t)(q - p));

    errno = 0;
    *d = strtod(text, NULL);
    lua_pop(L, 1);
    return (*d == HUGE_VAL || *d == -HUGE_VAL) && errno == ERANGE ? -1 : 0;
}

/* Push the number at ps->p: an integer when it has no fraction and no
 * exponent (refused beyond int64, as jansson does), else a float. */
static int push_number(lua_State *L, parser *ps) {
    const unsigned char *start = ps->p, *p = start, *end = ps->end;
    uint64_t m = 0;    /* the digits, while they fit */
    int neg = 0, big = 0;
    long exp10 = 0;
    double d;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || !is_digit(*p)) return invalid(ps);
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) return invalid(ps);
    } else {
        for (; p < end && is_digit(*p); p++) {
            if (m >= UINT64_C(1000000000000000000)) big = 1;
            else m = m * 10 + (*p - '0');
            if (big) exp10++;
        }
    }
    if (p >= end || (*p != '.' && (*p | 0x20) != 'e')) {
        if (big || m > (uint64_t)INT64_MAX + neg) return invalid(ps);
        /* -2^63 wraps to itself. */
        lua_pushinteger(L, neg ? (lua_Integer)(0 - m) : (lua_Integer)m);
        ps->p = p;
        skip_lost_nul(ps);
        return 0;
    }
    if (*p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return invalid(ps);
        for (; p < end && is_digit(*p); p++) {
            if (m >= UINT64_C(1000000000000000000)) big = 1;
            if (!big) m = m * 10 + (*p - '0'), exp10--;
        }
    }
    if (p < end && (*p | 0x20) == 'e') {
        int eneg = 0;
        long e = 0;

        p++;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= end || !is_digit(*p)) return invalid(ps);
        for (; p < end && is_digit(*p); p++)
            if (e < 100000) e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
    /* With at most 53 bits of digits and a power of ten a double holds
     * exactly, one multiplication or division rounds correctly, so the
     * result is strtod's (Clinger's fast path). */
    if (!big && m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        d = exp10 < 0 ? (double)m / exact_pow10[-exp10] : (double)m * exact_pow10[exp10];
        if (neg) d = -d;
    } else if (slow_real(L, start, p, &d)) {
        return invalid(ps);
    }
    lua_pushnumber(L, d);
    ps->p = p;
    skip_lost_nul(ps);
    return 0;
}

/* true, false, null: jansson reads a whole run of letters as one word. */
static int push_literal(lua_State *L, parser *ps) {
    const unsigned char *p = ps->p, *q = p;

    while (q < ps->end && is_alpha(*q)) q++;
    if (q - p == 4 && !memcmp(p, "true", 4))
        lua_pushboolean(L, 1);
    else if (q - p == 5 && !memcmp(p, "false", 5))
        lua_pushboolean(L, 0);
    else if (q - p == 4 && !memcmp(p, "null", 4))
        json_push_null(L);
    else
        return invalid(ps);
    ps->p = q;
    skip_lost_nul(ps);
    return 0;
}

/* Move the n values above slot `first` into the array table at first
 * (made here, sized for them, the first time).
 * Stack before: [table], v1..vn; after: table. */
static void flush_array(lua_State *L, int first, int n, int *have_table, lua_Integer *stored) {
    int t = first, v = first + 1;

    if (!*have_table) {
        lua_createtable(L, n, 0);
        t = lua_gettop(L);
        v = first;
    }
    for (int i = 0; i < n; i++) {
        lua_pushvalue(L, v + i);            /* Stack: ..., value */
        lua_rawseti(L, t, ++*stored);
    }
    if (!*have_table) lua_replace(L, first); /* the table takes v1's slot */
    lua_settop(L, first);
    *have_table = 1;
}

/* The same for the n key-value pairs of an object, set in the order they
 * came so that the last of duplicate keys wins. */
static void flush_object(lua_State *L, int first, int n, int *have_table) {
    int t = first, kv = first + 1;

    if (!*have_table) {
        lua_createtable(L, 0, n);
        t = lua_gettop(L);
        kv = first;
    }
    for (int i = 0; i < 2 * n; i += 2) {
        lua_pushvalue(L, kv + i);
        lua_pushvalue(L, kv + i + 1);       /* Stack: ..., key, value */
        lua_rawset(L, t);
    }
    if (!*have_table) lua_replace(L, first);
    lua_settop(L, first);
    *have_table = 1;
}

/* Room for a container's pending values; jansson would not have run out. */
static int need_stack(lua_State *L, parser *ps, int n) {
    if (lua_checkstack(L, n)) return 0;
    ps->status = DECODE_NO_STACK;
    return -1;
}

static int parse_array(lua_State *L, parser *ps, int depth) {
    int first = lua_gettop(L) + 1, n = 0, have_table = 0;
    lua_Integer stored = 0;

    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        lua_createtable(L, 0, 0);
    } else {
        if (need_stack(L, ps, CHUNK + SLACK)) return -1;
        for (;;) {
            if (parse_value(L, ps, depth + 1)) return -1;
            if (++n == CHUNK) flush_array(L, first, n, &have_table, &stored), n = 0;
            skip_space(ps);
            if (ps->p >= ps->end) return invalid(ps);
            if (*ps->p == ']') break;
            if (*ps->p++ != ',') return invalid(ps);
            skip_space(ps);
        }
        ps->p++;
        if (n || !have_table) flush_array(L, first, n, &have_table, &stored);
    }
    /* The metatable is what lets an empty array encode as [] again. */
    lua_pushvalue(L, ps->array_mt);
    lua_setmetatable(L, -2);
    return 0;
}

static int parse_object(lua_State *L, parser *ps, int depth) {
    int first = lua_gettop(L) + 1, n = 0, have_table = 0;

    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        lua_createtable(L, 0, 0);
        return 0;
    }
    if (need_stack(L, ps, 2 * CHUNK + SLACK)) return -1;
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"') return invalid(ps);
        if (push_string(L, ps, 1)) return -1;      /* Stack: ..., key */
        skip_space(ps);
        if (ps->p >= ps->end || *ps->p++ != ':') return invalid(ps);
        skip_space(ps);
        if (parse_value(L, ps, depth + 1)) return -1; /* Stack: ..., key, value */
        if (++n == CHUNK) flush_object(L, first, n, &have_table), n = 0;
        skip_space(ps);
        if (ps->p >= ps->end) return invalid(ps);
        if (*ps->p == '}') break;
        if (*ps->p++ != ',') return invalid(ps);
        skip_space(ps);
    }
    ps->p++;
    if (n || !have_table) flush_object(L, first, n, &have_table);
    return 0;
}

/* Push the value that starts at ps->p (after any white space). */
static int parse_value(lua_State *L, parser *ps, int depth) {
    if (depth > MAX_DEPTH || ps->p >= ps->end) return invalid(ps);
    switch (*ps->p) {
    case '{': return parse_object(L, ps, depth);
    case '[': return parse_array(L, ps, depth);
    case '"': return push_string(L, ps, 0);
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return push_number(L, ps);
    default: return push_literal(L, ps);
    }
}

/* Runs under lua_pcall, so that a memory error while building tables comes
 * back to json_decode as a return code.  Nothing here owns memory that a
 * raised error would leak: strings are built in luaL_Buffers.
 * Stack: parser; returns the value, or nothing with ps->status set. */
static int decode_protected(lua_State *L) {
    parser *ps = lua_touserdata(L, 1);

    lua_getfield(L, LUA_REGISTRYINDEX, JSON_ARRAY_MT); /* Stack: parser, mt */
    ps->array_mt = lua_gettop(L);
    skip_space(ps);
    if (parse_value(L, ps, 1)) return 0;
    skip_space(ps);
    if (ps->p != ps->end) {
        ps->status = DECODE_INVALID;
        return 0;
    }
    return 1;
}

/* Let jansson say what is wrong with text it refuses as well. */
static void describe_invalid(const char *buf, size_t len, size_t at, char *errbuf,
                             size_t errlen) {
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (!root) {
        snprintf(errbuf, errlen, "invalid JSON at line %d, column %d (byte %d): %s",
                 jerr.line, jerr.column, jerr.position, jerr.text);
        return;
    }
    /* The two parsers disagree, which the json_oracle fuzzer looks for. */
    json_decref(root);
    snprintf(errbuf, errlen, "invalid JSON at byte %zu", at);
}

int json_decode(lua_State *L, const char *buf, size_t len, char *errbuf,
                size_t errlen) {
    parser ps = {(const unsigned char *)buf, (const unsigned char *)buf + len, 0, DECODE_OK};
    int rc;

    if (!lua_checkstack(L, SLACK)) {
        snprintf(errbuf, errlen, "cannot decode JSON: Lua stack overflow");
        return -1;
    }
    lua_pushcfunction(L, decode_protected);
    lua_pushlightuserdata(L, &ps);
    rc = lua_pcall(L, 1, 1, 0);
    if (rc != LUA_OK) {
        /* A memory error; its message is a string. */
        const char *msg = lua_tostring(L, -1);

        snprintf(errbuf, errlen, "cannot decode JSON: %s", msg ? msg : "error");
        lua_pop(L, 1);
        return -1;
    }
    if (ps.status == DECODE_OK) return 0;
    lua_pop(L, 1);
    if (ps.status == DECODE_NO_STACK)
        snprintf(errbuf, errlen, "cannot decode JSON: Lua stack overflow");
    else
        describe_invalid(buf, len, (size_t)(ps.p - (const unsigned char *)buf), errbuf, errlen);
    return -1;
}
