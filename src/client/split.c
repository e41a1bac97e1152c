/* Splitting a script into statements the way psql's lexer does: a ';'
 * ends a statement unless it is inside a quoted string ('...', E'...'
 * with backslash escapes, "..."), a dollar-quoted string ($tag$...$tag$),
 * a comment (-- to end of line, nested slash-star), parentheses, or the
 * BEGIN ... END body of CREATE [OR REPLACE] FUNCTION/PROCEDURE (SQL-standard
 * bodies, tracked with psql's heuristic). Anything unterminated runs to
 * the end of the script, where PostgreSQL reports it. */
#include "client/client.h"

#include <string.h>
#include <strings.h>

static int ident_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static int ident_char(unsigned char c) {
    return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static int word_is(const char *w, size_t n, const char *kw) {
    return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* At s[i] == '$': the length of a dollar-quote delimiter ($$ or $tag$),
 * or 0 if this is no delimiter (e.g. a parameter $1). */
static size_t dollar_tag(const char *s, size_t n, size_t i) {
    size_t j = i + 1;
    if (j < n && s[j] == '$')
        return 2;
    if (j >= n || !ident_start((unsigned char)s[j]))
        return 0;
    while (j < n && ident_char((unsigned char)s[j]) && s[j] != '$')
        j++;
    if (j < n && s[j] == '$')
        return j - i + 1;
    return 0;
}

int sql_next_statement(const char *s, size_t n, size_t *pos, size_t *start, size_t *len) {
    size_t i = *pos;
    for (;;) {
        size_t begin = i;
        int content = 0, paren = 0, begin_depth = 0, nident = 0;
        char idents[4] = {0};
        while (i < n) {
            unsigned char c = (unsigned char)s[i];
            if (c == ';' && paren == 0 && begin_depth == 0)
                break;
            if (c == '-' && i + 1 < n && s[i + 1] == '-') {
                while (i < n && s[i] != '\n')
                    i++;
                continue;
            }
            if (c == '/' && i + 1 < n && s[i + 1] == '*') {
                int depth = 1;
                i += 2;
                while (i < n && depth) {
                    if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
                        depth++;
                        i += 2;
                    } else if (s[i] == '*' && i + 1 < n && s[i + 1] == '/') {
                        depth--;
                        i += 2;
                    } else {
                        i++;
                    }
                }
                continue;
            }
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
                i++;
                continue;
            }
            content = 1;
            if (c == '\'') {
                /* E'...' (or e'...') right after a non-identifier: backslash escapes */
                int esc = i > begin && (s[i - 1] == 'E' || s[i - 1] == 'e') &&
                          (i - 1 == begin || !ident_char((unsigned char)s[i - 2]));
                i++;
                while (i < n) {
                    if (esc && s[i] == '\\' && i + 1 < n) {
                        i += 2;
                    } else if (s[i] == '\'') {
                        if (i + 1 < n && s[i + 1] == '\'') {
                            i += 2;
                        } else {
                            i++;
                            break;
                        }
                    } else {
                        i++;
                    }
                }
                continue;
            }
            if (c == '"') {
                i++;
                while (i < n) {
                    if (s[i] == '"') {
                        if (i + 1 < n && s[i + 1] == '"') {
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    i++;
                }
                continue;
            }
            if (c == '$' && (i == begin || !ident_char((unsigned char)s[i - 1]))) {
                size_t tl = dollar_tag(s, n, i);
                if (tl) {
                    const char *tag = s + i;
                    i += tl;
                    while (i < n && !(s[i] == '$' && n - i >= tl && memcmp(s + i, tag, tl) == 0))
                        i++;
                    i = i < n ? i + tl : n;
                    continue;
                }
            }
            if (c == '(') {
                paren++;
                i++;
                continue;
            }
            if (c == ')') {
                if (paren > 0)
                    paren--;
                i++;
                continue;
            }
            if (ident_start(c)) {
                size_t w = i;
                while (i < n && ident_char((unsigned char)s[i]))
                    i++;
                const char *word = s + w;
                size_t wl = i - w;
                if (i < n && s[i] == '\'')
                    continue; /* a prefix: E'', B'', X'', U&'' handled above */
                /* psql: CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ... END */
                if (nident < 4) {
                    char k = 0;
                    if (word_is(word, wl, "create") || word_is(word, wl, "function") ||
                        word_is(word, wl, "procedure") || word_is(word, wl, "or") ||
                        word_is(word, wl, "replace"))
                        k = (char)(word[0] | 0x20);
                    idents[nident] = k;
                }
                nident++;
                if (idents[0] == 'c' &&
                    (idents[1] == 'f' || idents[1] == 'p' ||
                     (idents[1] == 'o' && idents[2] == 'r' &&
                      (idents[3] == 'f' || idents[3] == 'p'))) &&
                    paren == 0) {
                    if (word_is(word, wl, "begin"))
                        begin_depth++;
                    else if (word_is(word, wl, "case") && begin_depth >= 1)
                        begin_depth++;
                    else if (word_is(word, wl, "end") && begin_depth > 0)
                        begin_depth--;
                }
                continue;
            }
            i++;
        }
        size_t end = i;
        if (i < n)
            i++; /* the ';' */
        if (content) {
            *start = begin;
            *len = end - begin;
            *pos = i;
            return 1;
        }
        if (i >= n) {
            *pos = n;
            return 0;
        }
    }
}
