/* lmetrics.c - luka.metrics: counters, gauges and histograms an app
 * declares and updates from Lua.  The metrics themselves live in a C
 * registry outside the state (base/appmetrics.h): the runtime shares one
 * for the process, so a reloaded app that declares the same names finds
 * its values; anything else (the test kit, luka check) gives each state a
 * registry of its own, freed with it.  Declaring is allowed anywhere; the
 * same name and shape gives back the same metric. */
#include "api/lmetrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/state.h"

static const char *const MT[] = {"luka.metrics.counter", "luka.metrics.gauge",
                                 "luka.metrics.histogram"};
static const char REGISTRY_KEY = 'r'; /* the state's registry_ref_t */
static const char OBJECTS_KEY = 'o';  /* metric -> its userdata, one per metric */

/* What states opened from now on declare their metrics in (lmetrics_share). */
static appmetrics_t *shared;

typedef struct registry_ref {
    appmetrics_t *r;
    int owned;
} registry_ref_t;

void lmetrics_share(appmetrics_t *r) { shared = r; }

static int registry_gc(lua_State *L) {
    registry_ref_t *ref = lua_touserdata(L, 1);
    if (ref->owned) appmetrics_free(ref->r);
    ref->r = NULL;
    return 0;
}

static appmetrics_t *registry_of(lua_State *L) {
    registry_ref_t *ref;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &REGISTRY_KEY);
    ref = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ref ? ref->r : NULL;
}

/* Raise "luka.metrics: counter orders: <what>". */
static int metric_error(lua_State *L, const appmetric_t *m, const char *what) {
    return luaL_error(L, "luka.metrics: %s %s: %s", appmetrics_type_name(m->type), m->name, what);
}

/* The strings of the list at idx (nil: none) into out; raises otherwise. */
static int string_list(lua_State *L, int idx, const char *fname, const char *what,
                       const char **out, int max) {
    lua_Integer n;
    int keys = 0;
    if (lua_isnoneornil(L, idx)) return 0;
    if (!lua_istable(L, idx))
        return luaL_error(L, "luka.metrics.%s: %s must be a list, got %s", fname, what,
                          luaL_typename(L, idx));
    n = luaL_len(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        keys++;
        lua_pop(L, 1);
    }
    if (keys != n)
        return luaL_error(L, "luka.metrics.%s: %s must be a list such as { \"currency\" }", fname,
                          what);
    if (n > max)
        return luaL_error(L, "luka.metrics.%s: %d %s; at most %d", fname, (int)n, what, max);
    for (lua_Integer i = 1; i <= n; i++) {
        /* The table anchors the strings for the rest of the call. */
        if (lua_geti(L, idx, i) != LUA_TSTRING)
            return luaL_error(L, "luka.metrics.%s: %s[%d] must be a string, got %s", fname, what,
                              (int)i, luaL_typename(L, -1));
        out[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    return (int)n;
}

static int declare(lua_State *L, int type) {
    const char *fname = appmetrics_type_name(type);
    const char *labels[APPMETRICS_MAX_LABELS];
    double buckets[APPMETRICS_MAX_BUCKETS];
    int nlabels, nbuckets = 0;
    const char *name = luaL_checkstring(L, 1), *help;
    appmetrics_t *r = registry_of(L);
    appmetric_t *m;
    char err[2048];

    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "luka.metrics.%s: the help text of %s must be a string, got %s", fname,
                          name, luaL_typename(L, 2));
    help = lua_tostring(L, 2);
    nlabels = string_list(L, 3, fname, "labels", labels, APPMETRICS_MAX_LABELS);
    if (type == APPMETRIC_HISTOGRAM && !lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        nbuckets = (int)luaL_len(L, 4);
        if (nbuckets < 1 || nbuckets > APPMETRICS_MAX_BUCKETS)
            return luaL_error(L, "luka.metrics.histogram: %s has %d buckets; give 1 to %d, or nil "
                              "for the defaults", name, nbuckets, APPMETRICS_MAX_BUCKETS);
        for (int i = 0; i < nbuckets; i++) {
            int isnum;
            lua_geti(L, 4, i + 1);
            buckets[i] = lua_tonumberx(L, -1, &isnum);
            if (!isnum || lua_type(L, -1) != LUA_TNUMBER)
                return luaL_error(L, "luka.metrics.histogram: bucket %d of %s must be a number, "
                                  "got %s", i + 1, name, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
    }
    if (!r) return luaL_error(L, "luka.metrics.%s: no registry (luka.host not opened)", fname);
    m = appmetrics_declare(r, type, name, help, labels, nlabels, buckets, nbuckets, err,
                           sizeof(err));
    if (!m) return luaL_error(L, "luka.metrics.%s: %s", fname, err);
    /* Stack now: the arguments.  One userdata per metric, so a second
     * declaration returns the same object. */
    state_registry_table(L, &OBJECTS_KEY);
    if (lua_rawgetp(L, -1, m) == LUA_TUSERDATA) return 1;
    lua_pop(L, 1);
    *(appmetric_t **)lua_newuserdatauv(L, sizeof(appmetric_t *), 0) = m;
    luaL_setmetatable(L, MT[type]);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, m);
    return 1;
}

static int l_counter(lua_State *L) { return declare(L, APPMETRIC_COUNTER); }
static int l_gauge(lua_State *L) { return declare(L, APPMETRIC_GAUGE); }
static int l_histogram(lua_State *L) { return declare(L, APPMETRIC_HISTOGRAM); }

/* Whether key names one of m's labels. */
static int declared(const appmetric_t *m, const char *key) {
    for (int i = 0; i < m->nlabels; i++)
        if (strcmp(m->labels[i], key) == 0) return 1;
    return 0;
}

/* "currency, country", or "none". */
static void label_list(const appmetric_t *m, char *out, size_t len) {
    size_t at = 0;
    out[0] = '\0';
    if (!m->nlabels) snprintf(out, len, "none");
    for (int i = 0; i < m->nlabels && at < len; i++)
        at += (size_t)snprintf(out + at, len - at, "%s%s", i ? ", " : "", m->labels[i]);
}

/* The series named by the label values at idx (a table, or none for a
 * metric without labels); raises when they do not match the labels
 * declared exactly, or the metric has too many series. */
static appseries_t *series_at(lua_State *L, appmetric_t *m, int idx) {
    const char *values[APPMETRICS_MAX_LABELS];
    size_t lens[APPMETRICS_MAX_LABELS];
    int missing = 0, top = lua_gettop(L);
    char all[1024], err[2048];
    appseries_t *s;

    label_list(m, all, sizeof(all));
    if (!lua_isnoneornil(L, idx) && !lua_istable(L, idx)) {
        snprintf(err, sizeof(err), "label values must be a table such as { %s = ... }, got %s",
                 m->nlabels ? m->labels[0] : "name", luaL_typename(L, idx));
        metric_error(L, m, err);
    }
    if (lua_istable(L, idx)) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TSTRING && declared(m, lua_tostring(L, -1))) continue;
            snprintf(err, sizeof(err), "label %s is not declared (labels: %s)",
                     luaL_tolstring(L, -1, NULL), all);
            metric_error(L, m, err);
        }
    }
    if (!m->nlabels) return m->series[0];
    luaL_checkstack(L, m->nlabels + 4, "label values");
    for (int i = 0; i < m->nlabels; i++) {
        int t = LUA_TNIL;
        if (lua_istable(L, idx)) t = lua_getfield(L, idx, m->labels[i]);
        else lua_pushnil(L);
        if (t == LUA_TNIL) {
            missing++;
        } else if (t == LUA_TBOOLEAN) {
            lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
            lua_replace(L, -2);
        } else if (t != LUA_TSTRING && t != LUA_TNUMBER) {
            snprintf(err, sizeof(err),
                     "the value of label %s must be a string, a number or a boolean, got %s",
                     m->labels[i], luaL_typename(L, -1));
            metric_error(L, m, err);
        }
        values[i] = lua_tolstring(L, -1, &lens[i]);
    }
    if (missing) {
        size_t at = (size_t)snprintf(err, sizeof(err), "%s ", missing > 1 ? "labels" : "label");
        for (int i = 0, k = 0; i < m->nlabels && at < sizeof(err); i++)
            if (!values[i])
                at += (size_t)snprintf(err + at, sizeof(err) - at, "%s%s", k++ ? ", " : "",
                                       m->labels[i]);
        if (at < sizeof(err))
            snprintf(err + at, sizeof(err) - at, " %s missing (labels: %s)",
                     missing > 1 ? "are" : "is", all);
        metric_error(L, m, err);
    }
    s = appmetric_series(m, values, lens, err, sizeof(err));
    if (!s) metric_error(L, m, err);
    lua_settop(L, top);
    return s;
}

static appmetric_t *check_metric(lua_State *L, int type) {
    return *(appmetric_t **)luaL_checkudata(L, 1, MT[type]);
}

/* An optional amount n at 2 (default 1), then the label values. */
static appseries_t *amount_and_series(lua_State *L, appmetric_t *m, lua_Number *n) {
    if (lua_type(L, 2) == LUA_TNUMBER) {
        *n = lua_tonumber(L, 2);
        return series_at(L, m, 3);
    }
    if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2)) {
        lua_pushfstring(L, "takes an amount (a number) and/or label values (a table), got %s",
                        luaL_typename(L, 2));
        metric_error(L, m, lua_tostring(L, -1));
    }
    *n = 1;
    return series_at(L, m, 2);
}

/* Raise "luka.metrics: gauge g: <what>, got <v>" for a number v refused. */
static int number_error(lua_State *L, const appmetric_t *m, const char *what, double v) {
    char msg[300];
    if (isnan(v)) snprintf(msg, sizeof(msg), "%s, got nan", what);
    else snprintf(msg, sizeof(msg), "%s, got %g", what, v);
    return metric_error(L, m, msg);
}

/* counter:inc([n], [labels]) */
static int counter_inc(lua_State *L) {
    appmetric_t *m = check_metric(L, APPMETRIC_COUNTER);
    lua_Number n;
    appseries_t *s = amount_and_series(L, m, &n);
    if (!(n >= 0) || isinf(n))
        return number_error(L, m, "a counter only goes up: inc takes a finite amount >= 0", n);
    s->value += n;
    return 0;
}

static int gauge_add(lua_State *L, int sign) {
    appmetric_t *m = check_metric(L, APPMETRIC_GAUGE);
    lua_Number n;
    appseries_t *s = amount_and_series(L, m, &n);
    if (isnan(n) || isinf(n))
        return number_error(L, m, sign > 0 ? "inc takes a finite amount" : "dec takes a finite amount",
                            n);
    s->value += sign * n;
    return 0;
}

static int gauge_inc(lua_State *L) { return gauge_add(L, 1); }
static int gauge_dec(lua_State *L) { return gauge_add(L, -1); }

/* A number that must be there, at 2. */
static lua_Number value_arg(lua_State *L, appmetric_t *m, const char *method) {
    if (lua_type(L, 2) != LUA_TNUMBER) {
        lua_pushfstring(L, "%s takes a number, got %s", method, luaL_typename(L, 2));
        metric_error(L, m, lua_tostring(L, -1));
    }
    return lua_tonumber(L, 2);
}

/* gauge:set(v, [labels]) */
static int gauge_set(lua_State *L) {
    appmetric_t *m = check_metric(L, APPMETRIC_GAUGE);
    lua_Number v = value_arg(L, m, "set");
    series_at(L, m, 3)->value = v;
    return 0;
}

/* histogram:observe(v, [labels]) */
static int histogram_observe(lua_State *L) {
    appmetric_t *m = check_metric(L, APPMETRIC_HISTOGRAM);
    lua_Number v = value_arg(L, m, "observe");
    appseries_t *s;
    if (isnan(v) || isinf(v)) return number_error(L, m, "observe takes a finite number", v);
    s = series_at(L, m, 3);
    appmetric_observe(m, s, v);
    return 0;
}

static int metric_tostring(lua_State *L) {
    const appmetric_t *m = *(appmetric_t **)lua_touserdata(L, 1);
    lua_pushfstring(L, "luka.metrics.%s %s", appmetrics_type_name(m->type), m->name);
    return 1;
}

static const luaL_Reg counter_methods[] = {{"inc", counter_inc}, {NULL, NULL}};
static const luaL_Reg gauge_methods[] = {
    {"set", gauge_set}, {"inc", gauge_inc}, {"dec", gauge_dec}, {NULL, NULL}};
static const luaL_Reg histogram_methods[] = {{"observe", histogram_observe}, {NULL, NULL}};

void lmetrics_inject_api(lua_State *L) {
    static const luaL_Reg *const methods[] = {counter_methods, gauge_methods, histogram_methods};
    static const luaL_Reg fns[] = {
        {"counter", l_counter}, {"gauge", l_gauge}, {"histogram", l_histogram}, {NULL, NULL}};
    registry_ref_t *ref;

    for (int i = 0; i < 3; i++) {
        if (luaL_newmetatable(L, MT[i])) {
            lua_newtable(L);
            luaL_setfuncs(L, methods[i], 0);
            lua_setfield(L, -2, "__index");
            lua_pushcfunction(L, metric_tostring);
            lua_setfield(L, -2, "__tostring");
        }
        lua_pop(L, 1);
    }
    ref = lua_newuserdatauv(L, sizeof(*ref), 0);
    ref->r = shared ? shared : appmetrics_new();
    ref->owned = !shared;
    lua_newtable(L);
    lua_pushcfunction(L, registry_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &REGISTRY_KEY);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "metrics");
}
