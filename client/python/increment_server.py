"""Python grpcio server for the Incrementer API (v1 and v2), the peer most users have today.

Used by the latency runs. Prints "testbed serving python on HOST:PORT" once it listens.
Usage: increment_server.py [--addr 127.0.0.1:0] [--workers 4]
"""

import argparse
import sys
from concurrent import futures

from increment_client import load_stubs

INT64_MAX = 2**63 - 1


def add(value, step, context):
    import grpc

    if step < 1:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"step must be at least 1, got {step}")
    if value + step > INT64_MAX:
        context.abort(grpc.StatusCode.OUT_OF_RANGE, f"value {value} + step {step} overflows int64")
    return value + step


def main():
    import grpc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:0")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    v1_pb2, v1_grpc = load_stubs("v1")
    v2_pb2, v2_grpc = load_stubs("v2")

    class V1(v1_grpc.IncrementerServicer):
        def Increment(self, request, context):
            return v1_pb2.IncrementReply(value=add(request.value, 1, context))

        def IncrementStream(self, requests, context):
            for request in requests:
                yield v1_pb2.IncrementReply(value=add(request.value, 1, context))

    class V2(v2_grpc.IncrementerServicer):
        def reply(self, request, context):
            step = request.step if request.HasField("step") else 1
            return v2_pb2.IncrementReply(
                value=add(request.value, step, context),
                request_id=request.request_id,
                served_by_version="2.0.0-python",
            )

        def Increment(self, request, context):
            return self.reply(request, context)

        def IncrementStream(self, requests, context):
            for request in requests:
                yield self.reply(request, context)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    v1_grpc.add_IncrementerServicer_to_server(V1(), server)
    v2_grpc.add_IncrementerServicer_to_server(V2(), server)
    host = args.addr.rsplit(":", 1)[0]
    port = server.add_insecure_port(args.addr)
    if port == 0:
        sys.exit(f"cannot listen on {args.addr}")
    server.start()
    print(f"testbed serving python on {host}:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
