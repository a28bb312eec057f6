"""The patterns of the OpenAPI document against the API's own parsers, at their edges.

    openapi_edges.py API_URL ACCESS_TOKEN

Random requests seldom land on the characters where a pattern and a parser could part: white space of every kind
around and inside a name, the characters a name may not hold (controls, direction marks, invisible and blank
ones, separators, noncharacters, in the Basic Multilingual Plane and beyond it), lengths at their limits. Each
value here is checked against the document's schema (with jsonschema_rs, as schemathesis checks) and sent to the
API; the two must agree: a value the schema takes is accepted, one it refuses is refused with the documented
code. Run by tests/schemathesis.sh with its virtualenv's Python.
"""

import json
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import jsonschema_rs
import requests

api, token = sys.argv[1], sys.argv[2]
doc = requests.get(f"{api}/api/openapi.json", timeout=10).json()
schemas = doc["components"]["schemas"]
auth = {"Authorization": f"Bearer {token}"}
disagreements = []
checked = 0


def check(what, schema, value, accepted):
    """`accepted` tells whether the API took `value`; it must be what the schema says."""
    global checked
    checked += 1
    valid = jsonschema_rs.validator_for(schema).is_valid(value)
    if valid != accepted:
        said = "takes" if valid else "refuses"
        did = "accepted" if accepted else "refused"
        disagreements.append(f"{what} {json.dumps(value)}: the document {said} it, the API {did} it")


# White space, as Rust's `char::is_whitespace` (trimmed around room names) knows it.
SPACES = "\t\n\v\f\r \u0085\u00a0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000"
# Characters no name may hold (natter_proto::text::hidden_kind), and neighbours that may.
HIDDEN = (
    "\u0000\u0007\u001c\u001f\u007f\u0085\u009f\u00ad\u034f\u0600\u061c\u06dd\u070f\u0890\u08e2\u115f\u1160"
    "\u17b4\u180b\u180e\u180f\u200b\u200d\u200e\u200f\u2028\u2029\u202a\u202e\u2060\u2064\u2066\u2069\u206a"
    "\u206f\u2800\u3164\ufdd0\ufdef\ufeff\uffa0\ufff9\ufffb\ufffe\uffff\U000110bd\U000110cd\U00013430"
    "\U0001bca0\U0001d173\U000e0001\U000e0020\U000e007f\U0001fffe\U0010ffff"
)
VISIBLE = "a\u00e9\u0100\u2065\u2030\u180a\ufdcf\ufdf0\ufffc\U0001f600\U00010000\U000e0080\U0010fffd\u30a2"

names = ["", "a", "General", "Caf\u00e9 \u2615 \u65e5\u672c", "a" * 64, "a" * 65, "\u00e9" * 64, "\u00e9" * 65]
names += [" " + "a" * 64 + " ", "a" + " " * 62 + "b", "a" + " " * 63 + "b", "\U0001f600" * 64, "\U0001f600" * 65]
for space in SPACES:
    names += [space, f"{space}a{space}", f"a{space}b", f"{space}{space}a{space}b{space}"]
for hidden in HIDDEN:
    names += [f"{hidden}a", f"a{hidden}", f"a{hidden}b"]
for visible in VISIBLE:
    names += [f" {visible} ", f"x{visible}y"]
# Several at once: the API, not this script, is what takes the time.
pool = ThreadPoolExecutor(max_workers=8)
create = lambda name: requests.post(f"{api}/api/rooms", json={"name": name}, headers=auth, timeout=10)  # noqa: E731
for name, reply in zip(names, pool.map(create, names)):
    if reply.status_code not in (201, 422) or (reply.status_code == 422 and "invalid_room_name" not in reply.text):
        disagreements.append(f"room name {json.dumps(name)}: answered {reply.status_code} {reply.text}")
        continue
    check("room name", schemas["RoomName"], name, reply.status_code == 201)

tag = uuid.uuid4().hex[:6]
users = ["ab", "abc", "a" * 32, "a" * 33, "_ab", "-ab", "a_-", "9zz", "ab c", "ab.c", "\u00e9ab", "abc\n", " abc"]
users += [f"{tag}{c}" for c in "_-Z9"] + [f"{tag}\u200b", f"{tag}\u0000", f"{tag}\U0001f600"]
guest = lambda name: requests.post(f"{api}/api/guest", json={"username": name}, timeout=10)  # noqa: E731
for name, reply in zip(users, pool.map(guest, users)):
    if reply.status_code not in (201, 409, 422) or (reply.status_code == 422 and "invalid_username" not in reply.text):
        disagreements.append(f"user name {json.dumps(name)}: answered {reply.status_code} {reply.text}")
        continue
    check("user name", schemas["Username"], name, reply.status_code != 422)

search = next(p for p in doc["paths"]["/api/search"]["get"]["parameters"] if p["name"] == "q")["schema"]
for q in ["a", " a ", "\u3000x", "x" * 200, "x" * 201, "\U0001f600" * 200, *SPACES, SPACES, "\u200b", "\u0000"]:
    reply = requests.get(f"{api}/api/search", params={"q": q}, headers=auth, timeout=10)
    if reply.status_code not in (200, 400):
        disagreements.append(f"search {json.dumps(q)}: answered {reply.status_code} {reply.text}")
        continue
    check("search words", search, q, reply.status_code == 200)

for line in disagreements:
    print(line)
print(f"{checked} values at the edges of the document's patterns: {len(disagreements)} disagreements")
sys.exit(1 if disagreements else 0)
