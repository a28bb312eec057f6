"""What tests/schemathesis.sh tells schemathesis that the OpenAPI document cannot say.

OpenAPI describes each query parameter alone: it cannot say that `before` and `after` of
GET /api/rooms/{id}/messages exclude each other (both at once are a 400 `invalid_query`, as the parameters'
descriptions say). Requests with both are not made, in any phase.

The run's two workers are threads in one interpreter, and hypothesis parses source with `ast.parse` to describe
its strategies. CPython 3.11 keeps the AST builder's recursion counter in the interpreter, not the thread, so two
parses at once can corrupt it and raise "SystemError: AST constructor recursion depth mismatch" (CPython issue
106905): an error of the test's own interpreter, reported as a failed operation. Parses are taken one at a time.
"""

import ast
import threading

import schemathesis

HISTORY = "/api/rooms/{id}/messages"


def _one_parse_at_a_time(parse, lock=threading.Lock()):
    def locked_parse(*args, **kwargs):
        with lock:
            return parse(*args, **kwargs)

    return locked_parse


ast.parse = _one_parse_at_a_time(ast.parse)


@schemathesis.hook
def filter_case(ctx, case):
    query = case.query or {}
    return not (case.operation.path == HISTORY and "before" in query and "after" in query)
