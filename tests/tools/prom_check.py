#!/usr/bin/env python3
"""prom_check.py FILE — a strict reader of the Prometheus text exposition
format (0.0.4), for the tests of `tcpspool metrics` where promtool is not
installed, and always alongside it.

Checks what a scraper relies on and what the naming conventions ask:
  - every line is "# HELP name text", "# TYPE name type", another comment,
    or a sample "name{label="value",...} value" (no timestamps written);
  - metric and label names are valid; label values are quoted with only
    \\\\, \\" and \\n escapes; values parse as floats;
  - each family has one HELP and one TYPE, both before its samples, and
    its samples are contiguous (a family never reappears later);
  - no series (name and label set) appears twice; no label repeats in one;
  - counters end in _total, nothing else does; names carry the tcpspool_
    prefix; gauges of bytes or seconds end in _bytes or _seconds.
On success prints JSON {"types": {family: type}, "samples": [[name,
{labels}, value], ...]} and exits 0; else prints "line N: why" on stderr
and exits 1.
"""
import json
import math
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Bad(Exception):
    pass


def parse_labels(s, i):
    """Parses {a="x",...} starting at s[i] == '{'; returns (dict, next i)."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == '}':
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise Bad("bad label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise Bad("reserved label name %s" % name)
        if name in labels:
            raise Bad("label %s repeated" % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise Bad("expected =\" after label %s" % name)
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise Bad("unterminated value of label %s" % name)
            c = s[i]
            if c == '"':
                i += 1
                break
            if c == '\\':
                e = s[i + 1:i + 2]
                if e not in ('\\', '"', 'n'):
                    raise Bad("bad escape \\%s in label %s" % (e, name))
                val.append('\n' if e == 'n' else e)
                i += 2
                continue
            if c == '\n':
                raise Bad("raw newline in label %s" % name)
            val.append(c)
            i += 1
        labels[name] = ''.join(val)
        if i < len(s) and s[i] == ',':
            i += 1
        elif i < len(s) and s[i] == '}':
            continue
        else:
            raise Bad("expected , or } after label %s" % name)


def family_of(name, types):
    return name if name in types else None


def check(text):
    if text and not text.endswith("\n"):
        raise Bad("no newline at the end")
    types, helps, samples, seen = {}, set(), [], set()
    closed = set()        # families whose samples are over
    current = None
    for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        try:
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    if not NAME.fullmatch(name):
                        raise Bad("bad metric name %r" % name)
                    if name in closed or name == current:
                        if parts[1] == "TYPE" or name in helps:
                            raise Bad("%s %s after its samples or twice"
                                      % (parts[1], name))
                    if parts[1] == "HELP":
                        if name in helps:
                            raise Bad("HELP %s twice" % name)
                        if len(parts) < 4 or not parts[3].strip():
                            raise Bad("HELP %s without text" % name)
                        helps.add(name)
                    else:
                        if name in types:
                            raise Bad("TYPE %s twice" % name)
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise Bad("TYPE %s: bad type" % name)
                        types[name] = parts[3]
                continue
            if not line.strip():
                raise Bad("blank line")
            m = NAME.match(line)
            if not m:
                raise Bad("bad sample name")
            name = m.group(0)
            i = m.end()
            labels = {}
            if i < len(line) and line[i] == '{':
                labels, i = parse_labels(line, i)
            if line[i:i + 1] != ' ':
                raise Bad("expected a space before the value")
            fields = line[i + 1:].split(" ")
            if len(fields) != 1:
                raise Bad("a timestamp or trailing text after the value")
            try:
                value = float(fields[0])
            except ValueError:
                raise Bad("bad value %r" % fields[0])
            if math.isnan(value):
                raise Bad("NaN value")
            fam = family_of(name, types)
            if fam is None:
                raise Bad("sample %s before its TYPE" % name)
            if fam not in helps:
                raise Bad("sample %s without HELP" % name)
            if fam in closed:
                raise Bad("family %s is not contiguous" % fam)
            if current is not None and current != fam:
                closed.add(current)
            current = fam
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise Bad("series %s%s twice" % (name, labels))
            seen.add(key)
            if types[fam] == "counter" and value < 0:
                raise Bad("negative counter %s" % name)
            samples.append([name, labels, value])
        except Bad as e:
            raise Bad("line %d: %s: %s" % (n, e, line[:120]))
    for fam, typ in types.items():
        if not fam.startswith("tcpspool_"):
            raise Bad("%s: no tcpspool_ prefix" % fam)
        if fam not in helps:
            raise Bad("%s: TYPE without HELP" % fam)
        if (typ == "counter") != fam.endswith("_total"):
            raise Bad("%s: only counters end in _total" % fam)
        if re.search(r'_(byte|second|milliseconds|ms|kb|mb)$', fam):
            raise Bad("%s: not a base unit in its plural" % fam)
    for fam in helps:
        if fam not in types:
            raise Bad("%s: HELP without TYPE" % fam)
    return {"types": types, "samples": samples}


def main():
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            text = f.read()
        print(json.dumps(check(text)))
    except (Bad, UnicodeDecodeError, OSError) as e:
        sys.stderr.write("%s: %s\n" % (sys.argv[1], e))
        sys.exit(1)


if __name__ == "__main__":
    main()
