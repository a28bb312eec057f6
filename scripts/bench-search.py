#!/usr/bin/env python3
"""The data, the measurements and the report of scripts/bench-search.sh (which starts PostgreSQL and the auth API).

  bench-search.py generate --messages N --rooms FILE --authors ID:NAME,... --start UNIX_SECS --days D --picks FILE
      writes N messages to stdout in COPY text format (epoch, seq, room_id, client_id, user_id, user_name, body,
      sent_at), and to --picks the words chosen for the queries with how many messages hold each.
  bench-search.py run --api URL --token T --db-url URL --rooms FILE --picks FILE --pg-pid PID --api-pid PID ...
      counts each query's matches, runs EXPLAIN (ANALYZE, BUFFERS) for the common and the rare word, times the
      queries over HTTP with the CPU of PostgreSQL and of the auth API, prints a Markdown table, and (with --docs)
      writes the section "Search on a million messages" of docs/benchmarks.md.
"""

import argparse
import collections
import datetime
import http.client
import json
import os
import pathlib
import random
import subprocess
import sys
import textwrap
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
# BENCH_DOC: another file to write the section into (a copy, to try the script without touching the docs).
DOC = pathlib.Path(os.environ.get("BENCH_DOC") or ROOT / "docs" / "benchmarks.md")
HEADING = "## Search on a million messages"

# The most frequent words of the vocabulary, most frequent first; the rest are made-up words. Frequencies follow
# Zipf's law (the word of rank k is drawn with weight 1/k), as words of natural text roughly do.
COMMON = """the ok i you to a and is it that in of for on we this lol yes no so but have not just be are my with
what do can at was me will if all thanks there get now how about one think like know good they see here up out yeah
go time when need make today work would more sure right also then back did really from or well some let any going
new day still want people look sorry nice great code later deploy build test please check hey fine tomorrow thank
morning release review merge branch ticket lunch coffee weekend server database login password error bug fix""".split()
# Words often followed by another: a phrase people search for.
BIGRAMS = {"thank": "you", "good": "morning", "see": "you", "code": "review"}
VOCABULARY = 50_000
EPOCH = 1_700_000_000_000_000  # the stream's epoch, as the persister writes it (Unix microseconds)


def vocabulary(rng):
    onsets = "b d f g k l m n p r s t v z ch sh br tr pl".split()
    vowels = "a e i o u ai ou".split()
    seen = set(COMMON)
    words = list(COMMON)
    while len(words) < VOCABULARY:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.choice((2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def generate(args):
    rng = random.Random(args.seed)
    words = vocabulary(rng)
    rooms = [line.strip() for line in open(args.rooms) if line.strip()]
    authors = [a.split(":", 1) for a in args.authors.split(",")]
    weights, acc = [], 0.0
    for k in range(1, len(words) + 1):
        acc += 1.0 / k
        weights.append(acc)
    n = args.messages
    # Chat messages are short: 1 to 30 words, 8 on average.
    lengths = [min(30, 1 + int(rng.expovariate(1 / 7))) for _ in range(n)]
    tokens = rng.choices(words, cum_weights=weights, k=sum(lengths))
    docs = collections.Counter()
    span = args.days * 86400 / n
    out = sys.stdout
    buf = []
    pos = 0
    for i in range(n):
        msg = tokens[pos:pos + lengths[i]]
        pos += lengths[i]
        for j in range(len(msg) - 1):
            follow = BIGRAMS.get(msg[j])
            if follow and rng.random() < 0.8:
                msg[j + 1] = follow
        docs.update(set(msg))
        seq = i + 1
        room = rooms[rng.randrange(len(rooms))]
        uid, uname = authors[rng.randrange(len(authors))]
        ts = datetime.datetime.fromtimestamp(args.start + i * span, datetime.timezone.utc)
        buf.append(f"{EPOCH}\t{seq}\t{room}\tc{seq}\t{uid}\t{uname}\t{' '.join(msg)}\t{ts.isoformat(sep=' ')}\n")
        if len(buf) == 10_000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    out.flush()

    def nearest(target, exclude=()):
        return min((w for w in words if w not in exclude), key=lambda w: (abs(docs[w] - target), w))

    medium = nearest(n // 100)
    rare = nearest(50)
    first = nearest(n * 3 // 100, exclude={medium})
    second = nearest(n * 3 // 100, exclude={medium, first})
    picks = {
        "common": {"q": words[0], "what": "a common word"},
        "medium": {"q": medium, "what": "a medium word"},
        "rare": {"q": rare, "what": "a rare word"},
        "two": {"q": f"{first} {second}", "what": "two words"},
        "phrase": {"q": '"thank you"', "what": "a phrase"},
    }
    for p in picks.values():
        p["generated_docs"] = {w: docs[w] for w in p["q"].strip('"').split()}
    json.dump({"picks": picks, "messages": n, "vocabulary": len(words),
               "top": [[w, docs[w]] for w in words[:5]]}, open(args.picks, "w"), indent=1)


# ---- measuring ----

def psql(db_url, sql):
    return subprocess.run(["psql", db_url, "-XqAt", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def lit(text):
    return "'" + text.replace("'", "''") + "'"


def rooms_array(rooms):
    return "ARRAY[" + ",".join(lit(r) for r in rooms) + "]::text[]"


# The statement of natter_history::search::find, as it runs.
SEARCH_SQL = (
    "WITH q AS (SELECT websearch_to_tsquery('simple', $1) AS q) "
    "SELECT m.room_id, m.position, m.user_id, m.user_name, m.body, m.sent_at, m.edited_at IS NOT NULL, "
    "ts_rank(to_tsvector('simple', m.body), q.q) AS rank "
    "FROM messages m, q "
    "WHERE m.kind = 'message' AND to_tsvector('simple', m.body) @@ q.q "
    "AND m.deleted_at IS NULL AND m.room_id = ANY($2) AND ($3::text IS NULL OR m.user_id = $3) "
    "ORDER BY rank DESC, m.position DESC LIMIT $4 OFFSET $5"
)


def explain(db_url, words, rooms):
    """EXPLAIN (ANALYZE, BUFFERS) of the search's statement prepared as the API's connections hold it (sqlx keeps
    each statement prepared on its connection, and the search sets `plan_cache_mode = force_custom_plan`): its
    first execution and its sixth, after which PostgreSQL would keep a generic plan, made without the words, were
    it allowed to. Returns the two plans and whether the sixth was generic."""
    args = f"{lit(words)}, {rooms_array(rooms)}, NULL, 21, 0"
    # As the API's search transaction sets it (natter_history::search::find).
    sql = ("SET plan_cache_mode = force_custom_plan;\n"
           f"PREPARE s(text, text[], text, bigint, bigint) AS {SEARCH_SQL};\n"
           f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE s({args});\n\\o /dev/null\n"
           + f"EXECUTE s({args});\n" * 4
           + f"\\o\nEXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE s({args});\n"
           "SELECT generic_plans FROM pg_prepared_statements WHERE name = 's';\n")
    res = subprocess.run(["psql", db_url, "-XqAt", "-v", "ON_ERROR_STOP=1"], input=sql, check=True,
                         capture_output=True, text=True).stdout
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(res.lstrip())
    rest = res.lstrip()[end:].lstrip()
    sixth, end = decoder.raw_decode(rest)
    generic = int(rest[end:].strip()) > 0
    return first[0], sixth[0], generic


def walk(node, depth=0):
    yield depth, node
    for child in node.get("Plans", []):
        yield from walk(child, depth + 1)


def plan_summary(plan):
    root = plan["Plan"]
    nodes = [n for _, n in walk(root)]
    index_scans = [n for n in nodes if n["Node Type"] in ("Bitmap Index Scan", "Index Scan", "Index Only Scan")]
    seq_scans = [n for n in nodes if n["Node Type"] == "Seq Scan"]
    heap = [n for n in nodes if n["Node Type"] == "Bitmap Heap Scan"]
    gin = [n for n in index_scans if "to_tsvector" in n.get("Index Name", "")]
    sort = next((n for n in nodes if n["Node Type"] == "Sort"), None)
    lines = []
    for depth, n in walk(root):
        what = n["Node Type"]
        if n.get("Relation Name"):
            what += f" on {n['Relation Name']}"
        if n.get("Index Name"):
            what += f" using {n['Index Name']}"
        extra = ""
        if n.get("Sort Method"):
            extra += f", {n['Sort Method']} {n.get('Sort Space Used', '?')} kB"
        if n.get("Exact Heap Blocks") is not None:
            extra += f", heap blocks exact {n['Exact Heap Blocks']} lossy {n.get('Lossy Heap Blocks', 0)}"
        if n.get("Rows Removed by Filter"):
            extra += f", removed by filter {n['Rows Removed by Filter']}"
        if n.get("Rows Removed by Index Recheck"):
            extra += f", removed by recheck {n['Rows Removed by Index Recheck']}"
        if n.get("Workers Launched"):
            extra += f", {n['Workers Launched']} workers"
        lines.append(f"{'  ' * depth}{what} (rows {n.get('Actual Rows')}, loops {n.get('Actual Loops')}, "
                     f"{n.get('Actual Total Time', 0):.1f} ms{extra})")
    gin_estimate = gin[0].get("Plan Rows") if gin else None
    return {
        "gin_estimate": gin_estimate,
        "gin_actual": [n.get("Actual Rows") for n in gin],
        "room_index": any("room_id_position" in n.get("Index Name", "") for n in index_scans),
        "execution_ms": plan.get("Execution Time"),
        "planning_ms": plan.get("Planning Time"),
        "gin_partitions": sorted({n.get("Index Name") for n in gin}),
        "seq_scans": sorted({(n.get("Relation Name"), n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0))
                             for n in seq_scans}),
        "heap_rows": sum(n.get("Actual Rows", 0) * n.get("Actual Loops", 1) for n in heap),
        "shared_hit": root.get("Shared Hit Blocks", 0),
        "shared_read": root.get("Shared Read Blocks", 0),
        "sort": f"{sort['Sort Method']} {sort.get('Sort Space Used')} kB" if sort and sort.get("Sort Method") else None,
        "jit": plan.get("JIT", {}).get("Timing", {}).get("Total"),
        "tree": lines,
    }


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        # utime, stime (and for the postmaster: cutime, cstime, its exited backends and parallel workers).
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total


def postgres_pids(postmaster):
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == postmaster:
                pids.append(int(entry))
    return pids


def cpu_seconds(postmaster, api_pid):
    tick = os.sysconf("SC_CLK_TCK")
    return cpu_ticks(postgres_pids(postmaster)) / tick, cpu_ticks([api_pid]) / tick


def percentile(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    k = max(0, min(len(sorted_ms) - 1, int(round(p / 100 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[k]


def measure(api, token, params, requests, warmup, budget, postmaster, api_pid):
    url = urllib.parse.urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    path = "/api/search?" + urllib.parse.urlencode(params)
    headers = {"authorization": f"Bearer {token}"}

    def one():
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return (time.perf_counter() - started) * 1000, resp.status, body

    for _ in range(warmup):
        one()
    pg0, api0 = cpu_seconds(postmaster, api_pid)
    started = time.monotonic()
    times, statuses, codes, returned = [], collections.Counter(), collections.Counter(), None
    while len(times) < requests and not (len(times) >= 20 and time.monotonic() - started > budget):
        ms, status, body = one()
        times.append(ms)
        statuses[status] += 1
        if status == 200:
            if returned is None:
                doc = json.loads(body)
                returned = (len(doc["results"]), doc["has_more"])
        else:
            try:
                codes[json.loads(body)["error"]["code"]] += 1
            except (ValueError, KeyError, TypeError):
                codes[str(status)] += 1
    wall = time.monotonic() - started
    pg1, api1 = cpu_seconds(postmaster, api_pid)
    conn.close()
    times.sort()
    n = len(times)
    return {
        "requests": n, "wall_s": wall,
        "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "max_ms": times[-1],
        "statuses": dict(statuses), "errors": dict(codes), "returned": returned,
        "pg_cpu_ms": (pg1 - pg0) / n * 1000, "api_cpu_ms": (api1 - api0) / n * 1000,
    }


def run(args):
    picks = json.load(open(args.picks))
    rooms = [line.strip() for line in open(args.rooms) if line.strip()]
    db = args.db_url
    # One room for `room=`: the caller's room where the rare word is most often, so that search finds something.
    rare_tsq = f"websearch_to_tsquery('simple', {lit(picks['picks']['rare']['q'])})"
    one_room = psql(db, f"SELECT room_id FROM messages WHERE kind = 'message' AND room_id = ANY({rooms_array(rooms)}) "
                        f"AND to_tsvector('simple', body) @@ {rare_tsq} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
                    ) or rooms[0]
    # The route's floor: a query with no search term (punctuation only) still checks the token, reads the
    # memberships and runs the statement, which finds nothing.
    cases = [{"key": "floor", "what": "no search term (floor)", "q": "?", "room": None}]
    for key in ("common", "medium", "rare", "two", "phrase"):
        p = picks["picks"][key]
        cases.append({"key": key, "what": p["what"], "q": p["q"], "room": None})
    for key in ("common", "rare"):
        p = picks["picks"][key]
        cases.append({"key": key + "_room", "what": p["what"] + ", one room", "q": p["q"], "room": one_room})

    member = rooms_array(rooms)
    for c in cases:
        tsq = f"websearch_to_tsquery('simple', {lit(c['q'])})"
        scope = lit(c["room"]) + "::text" if c["room"] else None
        mine = f"room_id = {scope}" if scope else f"room_id = ANY({member})"
        row = psql(db, f"SELECT count(*), count(*) FILTER (WHERE {mine}) FROM messages "
                       f"WHERE kind = 'message' AND to_tsvector('simple', body) @@ {tsq}")
        c["matches_all"], c["matches_searched"] = (int(x) for x in row.split("|"))
        print(f"bench: {c['what']} {c['q']!r}: {c['matches_all']:,} messages hold it, "
              f"{c['matches_searched']:,} in the rooms searched", file=sys.stderr)

    explains = {}
    for key, scope in (("common", rooms), ("rare", rooms), ("common_room", [one_room])):
        q = picks["picks"][key.removesuffix("_room")]["q"]
        print(f"bench: EXPLAIN (ANALYZE, BUFFERS) for {q!r} in {len(scope)} rooms", file=sys.stderr)
        first, sixth, generic = explain(db, q, scope)
        explains[key] = {"q": q, "first": plan_summary(first), "sixth": plan_summary(sixth), "generic": generic}
        for which in ("first", "sixth"):
            print(f"bench: {which} execution:", file=sys.stderr)
            print("\n".join(explains[key][which]["tree"]), file=sys.stderr)

    for c in cases:
        params = {"q": c["q"]}
        if c["room"]:
            params["room"] = c["room"]
        print(f"bench: timing {c['what']} {c['q']!r}", file=sys.stderr)
        c.update(measure(args.api, args.token, params, args.requests, args.warmup, args.budget, args.pg_pid,
                         args.api_pid))
        print(f"bench:   {c['requests']} requests, p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms, "
              f"max {c['max_ms']:.1f} ms, statuses {c['statuses']}, PostgreSQL CPU {c['pg_cpu_ms']:.1f} ms, "
              f"API CPU {c['api_cpu_ms']:.2f} ms a search", file=sys.stderr)

    table = render_table(cases)
    plans = render_plans(explains)
    print(table)
    print()
    print(plans)
    json.dump({"cases": cases, "explain": explains, "picks": picks}, open(args.out, "w"), indent=1)
    if args.docs:
        write_docs(args, picks, cases, explains, table, plans)
        print("bench: figures written to docs/benchmarks.md", file=sys.stderr)


def render_table(cases):
    lines = ["| query | `q` | messages holding it (all / searched) | requests | p50 | p99 | max "
             "| 422 `query_too_broad` | PostgreSQL CPU a search | auth API CPU a search |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        broad = c["errors"].get("query_too_broad", 0)
        other = sum(v for k, v in c["statuses"].items() if k not in (200, 422))
        lines.append(
            f"| {c['what']} | `{c['q']}` | {c['matches_all']:,} / {c['matches_searched']:,} | {c['requests']} "
            f"| {c['p50_ms']:,.1f} ms | {c['p99_ms']:,.1f} ms | {c['max_ms']:,.1f} ms "
            f"| {broad}{f' (+{other} other errors)' if other else ''} "
            f"| {c['pg_cpu_ms']:,.1f} ms | {c['api_cpu_ms']:.2f} ms |")
    return "\n".join(lines)


def plan_line(label, e):
    jit = f"{e['jit']:.1f} ms" if e["jit"] else "not used"
    seq = ", ".join(f"{r} ({n} rows read)" for r, n in e["seq_scans"]) or "none"
    rooms = ("ANDed with a scan of the (room_id, position) index" if e["room_index"]
             else "rooms checked on the rows found")
    return (f"{label}: execution {e['execution_ms']:,.1f} ms, planning {e['planning_ms']:.1f} ms; "
            f"GIN scans on {len(e['gin_partitions'])} partitions "
            f"({'`' + e['gin_partitions'][0] + '`, …' if e['gin_partitions'] else 'none'}), "
            f"estimated {e['gin_estimate']} rows each, actual {', '.join(f'{n:,}' for n in e['gin_actual'])}; "
            f"{rooms}; {e['heap_rows']:,} rows ranked; shared buffers hit {e['shared_hit']:,}, read "
            f"{e['shared_read']:,}; sort {e['sort']}; JIT {jit}; sequential scans: {seq}.")


def render_plans(explains):
    out = []
    for key, e in explains.items():
        sixth = "generic plan" if e["generic"] else "custom plan"
        what = "The common word in one room" if key == "common_room" else f"The {key} word"
        out.append(f"{what} `{e['q']}`. " + plan_line("First execution (custom plan)", e["first"]) + " "
                   + plan_line(f"Sixth execution ({sixth})", e["sixth"]))
        out.append("")
        if key == "rare":
            out.append("```\n-- first execution\n" + "\n".join(e["first"]["tree"]) + "\n```")
            out.append("")
        if key != "common_room":
            out.append(f"```\n-- sixth execution ({sixth})\n" + "\n".join(e["sixth"]["tree"]) + "\n```")
            out.append("")
    return "\n".join(out).strip("\n")


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    release = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                    if l.startswith("PRETTY_NAME=")), "?")
    return f"{os.cpu_count()} cores ({model}), {mem_kib / 1024 / 1024:.0f} GiB, {release}"


def write_docs(args, picks, cases, explains, table, plans):
    by = {c["key"]: c for c in cases}
    common, rare, medium = by["common"], by["rare"], by["medium"]
    pg_version = psql(args.db_url, "SHOW server_version")
    size = psql(args.db_url, "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits "
                             "WHERE inhparent = 'messages'::regclass")
    gin_size = psql(args.db_url, "SELECT pg_size_pretty(sum(pg_relation_size(c.oid))) FROM pg_class c "
                                 "JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_inherits h ON h.inhrelid = i.indrelid "
                                 "WHERE h.inhparent = 'messages'::regclass AND c.relname LIKE '%to_tsvector%'")
    top = ", ".join(f"`{w}` {n:,}" for w, n in picks["top"])
    broad_total = sum(c["errors"].get("query_too_broad", 0) for c in cases)
    slow = [c for c in cases if c["p50_ms"] > 500]
    ce, re_ = explains["common"], explains["rare"]
    # Sequential scans of empty partitions (before today, the default) read nothing.
    uses_gin = all(e[w]["gin_partitions"] and not any(n for _, n in e[w]["seq_scans"])
                   for e in (ce, re_) for w in ("first", "sixth"))
    floor, one = by["floor"], by["common_room"]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    build = "this debug build" if "debug" in args.api_build else "the API"
    generic_penalty = re_["generic"] and re_["sixth"]["execution_ms"] > 3 * re_["first"]["execution_ms"]
    rank_us = ce["first"]["execution_ms"] * 1000 / max(1, ce["first"]["heap_rows"])
    others = {c["what"]: c["errors"].get("query_too_broad", 0) for c in cases
              if c["key"] != "common" and c["errors"].get("query_too_broad")}
    timeouts = ("No request ran past the 3 s statement timeout (no 422 `query_too_broad`)."
                if not broad_total else
                "Only the common word's requests ran past the 3 s statement timeout (422 `query_too_broad`)."
                if not others else
                f"{broad_total} requests ran past the 3 s statement timeout (422 `query_too_broad`): "
                + ", ".join(f"{n} for {w}" for w, n in others.items()) + f", and the common word's.")
    reading = []
    if generic_penalty:
        reading.append(
            f"A rare word should be an index lookup, and planned for its words it is: `{rare['q']}` "
            f"({rare['matches_searched']:,} matches in the rooms searched) runs in "
            f"{re_['first']['execution_ms']:.1f} ms. But the API keeps the statement prepared on each pooled "
            f"connection, and from its sixth execution PostgreSQL keeps a generic plan, made without the words, "
            f"which ANDs each partition's GIN bitmap with a scan of the (room_id, position) index over every "
            f"message of the caller's rooms: {re_['sixth']['execution_ms']:.0f} ms, whatever the word. Through "
            f"the API the rare word costs {rare['pg_cpu_ms']:.0f} ms of PostgreSQL CPU and {rare['p50_ms']:.0f} ms "
            f"at the median (the route's floor, with no search term, is {floor['p50_ms']:.0f} ms, "
            f"{floor['api_cpu_ms']:.0f} ms of it {build}'s own CPU), and the medium word "
            f"({medium['matches_searched']:,} matches) {medium['p50_ms']:.0f} ms.")
    else:
        reading.append(
            f"A rare word is an index lookup: `{rare['q']}` ({rare['matches_searched']:,} matches in the rooms "
            f"searched) answers in {rare['p50_ms']:.1f} ms at the median, for {rare['pg_cpu_ms']:.1f} ms of "
            f"PostgreSQL CPU, and the medium word ({medium['matches_searched']:,} matches) in "
            f"{medium['p50_ms']:.0f} ms; the route's floor, with no search term, is {floor['p50_ms']:.1f} ms "
            f"({floor['api_cpu_ms']:.1f} ms of it {build}'s own CPU).")
    broad = common["errors"].get("query_too_broad", 0)
    room_plan = explains["common_room"]["sixth"]
    room_entries = sum(room_plan["gin_actual"])
    reading.append(
        f"A common word costs a rank of every match before the first page can be cut: `{common['q']}` matches "
        f"{common['matches_searched']:,} messages in the caller's rooms, each read from the heap, its "
        f"`to_tsvector` computed again for `ts_rank`, and sorted, about {rank_us:.0f} µs a match "
        f"({ce['first']['execution_ms']:,.0f} ms in EXPLAIN), so its latency grows with its matches"
        + (f": {broad} of its {common['requests']} requests ran past the 3 s statement timeout and were answered "
           f"422 `query_too_broad`." if broad else
           f": {common['p50_ms']:,.0f} ms at the median, within the 3 s timeout.")
        + f" In one room (`room=`) the same word ranks only {one['matches_searched']:,} matches, in "
        f"{one['p50_ms']:.0f} ms"
        + (f", but each partition's GIN scan still reads all of the word's {room_entries:,} entries before the "
           f"room narrows them." if room_plan["room_index"] and room_entries > 10 * max(1, one["matches_searched"])
           else "."))
    if slow or generic_penalty:
        fixes = []
        if generic_penalty:
            fixes.append("planning each search for its words (`SET LOCAL plan_cache_mode = force_custom_plan` "
                         "in the search's transaction, beside its statement timeout) would bring a rare word back "
                         "to about a millisecond")
        if slow:
            fixes.append("for very common words, bounding the ranking: rank only the newest N matches (a "
                         "subquery ordered by `position DESC` with a LIMIT, ranked above it; it still fetches every "
                         "match, but parses N), or order such terms by `position DESC` alone; a stored `tsvector` "
                         "column would also spare parsing every matching body again for `ts_rank`")
        reading.append("What would help, without changing which messages a search may see: " + "; ".join(fixes)
                       + ".")
    section = f"""
{HEADING}

`scripts/bench-search.sh` starts its own PostgreSQL (a throwaway cluster on a free port, default settings) and
the auth API, registers a user who owns {len(rooms_of(args))} rooms and another who owns as many private rooms the
first is not in, loads {picks['messages']:,} messages with COPY into `messages` (spread evenly over the
{2 * len(rooms_of(args))} rooms and over today's and the next three days' partitions; bodies of 1 to 30 words, 8 on
average, from a vocabulary of {picks['vocabulary']:,} words drawn with Zipf frequencies, the word of rank k with
weight 1/k; the five most frequent are in {top} messages), runs VACUUM ANALYZE, and then times `GET /api/search`
over HTTP, one request at a time on one kept-alive connection, after {args.warmup} warm-up requests:
{args.requests} requests a query, or as many as fit in {args.budget:.0f} s (at least 20). Without `room=` a search
covers the {len(rooms_of(args))} rooms the user is a member of, half of all messages; with it, the user's room where
the rare word is most frequent. *Messages holding it* is a SQL count of the messages matching the words, in the
whole table and in the rooms searched (what the search ranks). CPU is user + system time from /proc over the timed
requests divided by them: PostgreSQL's counts the postmaster, its backends and the parallel workers and backends
that exited; the auth API's is its process. The API keeps the search's statement prepared on each pooled
connection; the timings are of connections past their first searches (the floor's requests run first).

Date: {date}. Machine: {machine()}; PostgreSQL {pg_version}, default settings (shared_buffers 128 MB, JIT on).
The box is shared: other work ran on the same 2 cores during the run, so latencies carry its noise; the CPU
per search is the steadier figure. Command: `{args.command}` (auth API: `{args.api_build}`). `messages`:
{size} over its partitions, of which {gin_size} is the GIN indexes (`messages_search_idx`, one per partition).

{table}

{timeouts}
{' '.join(reading)}

EXPLAIN (ANALYZE, BUFFERS) of the search's statement, prepared in psql as the API's connections hold it, with the
user's {len(rooms_of(args))} rooms and `plan_cache_mode = force_custom_plan` as the API sets it: its first
execution, planned for the words (a custom plan), and its sixth, when PostgreSQL would otherwise settle on a generic
plan, made without the words, for every later execution. The planner estimates every word at
{ce['first']['gin_estimate']} rows a partition (the default selectivity of `@@`), so its plan is the same for a
common word as for a rare one. {'Every partition holding messages was searched through its own GIN index' if uses_gin else 'Not every partition holding messages was searched through its own GIN index'}
(a bitmap index scan per partition, `kind = 'message'` met by the partial index; the empty partitions, before
today and the default, are read by a sequential scan of nothing).

{plans}
"""
    section = "\n\n".join(wrap(block) for block in section.split("\n\n"))
    text = DOC.read_text()
    if HEADING in text:
        start = text.index("\n" + HEADING)
        nxt = text.find("\n## ", start + len(HEADING) + 1)
        text = text[:start] + section.rstrip("\n") + "\n" + (text[nxt:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n" + section
    DOC.write_text(text)


def wrap(block):
    """A paragraph of prose filled to the width of the rest of the document; tables, code and headings as they are."""
    if block.lstrip("\n").startswith(("|", "```", "#")):
        return block
    return textwrap.fill(" ".join(block.split()), width=115, break_long_words=False, break_on_hyphens=False)


def rooms_of(args):
    return [line.strip() for line in open(args.rooms) if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--messages", type=int, required=True)
    g.add_argument("--rooms", required=True)
    g.add_argument("--authors", required=True)
    g.add_argument("--start", type=float, required=True)
    g.add_argument("--days", type=int, default=4)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--picks", required=True)
    r = sub.add_parser("run")
    r.add_argument("--api", required=True)
    r.add_argument("--token", required=True)
    r.add_argument("--db-url", required=True)
    r.add_argument("--rooms", required=True, help="the rooms the user is a member of, one a line")
    r.add_argument("--picks", required=True)
    r.add_argument("--pg-pid", type=int, required=True)
    r.add_argument("--api-pid", type=int, required=True)
    r.add_argument("--requests", type=int, default=200)
    r.add_argument("--warmup", type=int, default=5)
    r.add_argument("--budget", type=float, default=90.0)
    r.add_argument("--out", required=True)
    r.add_argument("--command", default="scripts/bench-search.sh")
    r.add_argument("--api-build", default="")
    r.add_argument("--docs", action="store_true")
    args = ap.parse_args()
    {"generate": generate, "run": run}[args.cmd](args)


if __name__ == "__main__":
    main()
