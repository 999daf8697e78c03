"""Python grpcio client for the latency runs: N sequential dependent v1 increments from 0.

Prints one JSON object: {"latencies_ns": [...], "final": <last value>, "total_ns": <ns>}.
Usage: bench_client.py --addr HOST:PORT --requests N [--warmup W]
"""

import argparse
import json
import time

from increment_client import load_stubs


def main():
    import grpc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=1000)
    args = parser.parse_args()
    pb2, pb2_grpc = load_stubs("v1")
    with grpc.insecure_channel(args.addr) as channel:
        stub = pb2_grpc.IncrementerStub(channel)
        value = 0
        for _ in range(args.warmup):
            value = stub.Increment(pb2.IncrementRequest(value=value)).value
        latencies = []
        value = 0
        clock = time.perf_counter_ns
        start = clock()
        for _ in range(args.requests):
            before = clock()
            value = stub.Increment(pb2.IncrementRequest(value=value)).value
            latencies.append(clock() - before)
        total = clock() - start
    print(json.dumps({"latencies_ns": latencies, "final": value, "total_ns": total}))


if __name__ == "__main__":
    main()
