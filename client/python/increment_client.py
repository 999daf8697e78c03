"""Python grpcio client for the Incrementer API, v1 or v2, used by the compatibility matrix.

The stubs are generated from proto/v1 and proto/v2 with grpcio-tools on first use (into
clients/python/generated/), so this file is the only client code kept in the repository.

Usage: increment_client.py --addr HOST:PORT --api v1|v2 --mode unary|stream VALUE [VALUE ...]
       [--step N] [--request-id N]
Prints one JSON object: {"replies": [{"value": .., "request_id": .., "served_by": ..}]}
(served_by: the x-api-version response header, else v2's served_by_version, else null)
or, when the call fails, {"code": <grpc status number>, "message": "..."}.
"""

import argparse
import importlib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
GENERATED = HERE / "generated"


def load_stubs(api):
    """Generates (if stale) and imports the messages and stubs of proto/<api>."""
    proto = PROTO_ROOT / api / "increment.proto"
    out = GENERATED / api / "increment_pb2_grpc.py"
    if not out.exists() or out.stat().st_mtime < proto.stat().st_mtime:
        from grpc_tools import protoc

        GENERATED.mkdir(exist_ok=True)
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={GENERATED}",
            f"--grpc_python_out={GENERATED}",
            str(proto.relative_to(PROTO_ROOT)),
        ]
        if protoc.main(args) != 0:
            sys.exit(f"grpc_tools.protoc failed on {proto}")
    sys.path.insert(0, str(GENERATED))
    pb2 = importlib.import_module(f"{api}.increment_pb2")
    pb2_grpc = importlib.import_module(f"{api}.increment_pb2_grpc")
    return pb2, pb2_grpc


def make_request(pb2, api, value, args, index):
    if api == "v1":
        return pb2.IncrementRequest(value=value)
    request = pb2.IncrementRequest(value=value, request_id=args.request_id + index)
    if args.step is not None:
        request.step = args.step
    return request


def header_version(call):
    """The version a router says served the call (x-api-version response header), if any."""
    return dict(call.initial_metadata() or ()).get("x-api-version")


def reply_json(reply, header):
    return {
        "value": reply.value,
        "request_id": getattr(reply, "request_id", 0),
        "served_by": header or getattr(reply, "served_by_version", "") or None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--api", choices=["v1", "v2"], required=True)
    parser.add_argument("--mode", choices=["unary", "stream"], required=True)
    parser.add_argument("--step", type=int)
    parser.add_argument("--request-id", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("values", type=int, nargs="+")
    args = parser.parse_args()

    import grpc

    pb2, pb2_grpc = load_stubs(args.api)
    requests = [make_request(pb2, args.api, v, args, i) for i, v in enumerate(args.values)]
    replies = []
    with grpc.insecure_channel(args.addr) as channel:
        stub = pb2_grpc.IncrementerStub(channel)
        try:
            if args.mode == "unary":
                for request in requests:
                    reply, call = stub.Increment.with_call(request, timeout=args.timeout)
                    replies.append(reply_json(reply, header_version(call)))
            else:
                call = stub.IncrementStream(iter(requests), timeout=args.timeout)
                for reply in call:
                    replies.append(reply_json(reply, header_version(call)))
        except grpc.RpcError as err:
            print(json.dumps({"code": err.code().value[0], "message": err.details() or ""}))
            return
    print(json.dumps({"replies": replies}))


if __name__ == "__main__":
    main()
