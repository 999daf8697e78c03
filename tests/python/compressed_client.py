"""One gRPC method called by Python grpcio with its messages compressed (or not), for
tests/compression.rs and scripts/measure-compression. Messages go as bytes through grpcio's
generic multicallable, so no stubs are needed: the test encodes the request and judges the reply.

Usage: compressed_client.py --addr HOST:PORT --method /pkg.Service/Method --request HEX
       [--compression gzip|deflate|none] [--calls N] [--timeout S]
Prints one JSON object: {"code": N, "details": "...", "reply": HEX, "initial": {...},
"p50_us": N, "calls": N} (reply and initial metadata of the last call; p50_us over every call,
all of which must succeed when --calls is more than 1).
"""

import argparse
import json
import statistics
import time


def metadata(pairs):
    """Metadata as JSON: -bin values as hex of their bytes."""
    return {k: v.hex() if isinstance(v, bytes) else v for k, v in (pairs or ())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--request", required=True, help="the request message, hex")
    parser.add_argument("--compression", choices=["gzip", "deflate", "none"], default="gzip")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    import grpc

    compression = {
        "gzip": grpc.Compression.Gzip,
        "deflate": grpc.Compression.Deflate,
        "none": grpc.Compression.NoCompression,
    }[args.compression]
    request = bytes.fromhex(args.request)
    out = {"code": 0, "details": "", "reply": "", "initial": {}, "calls": 0}
    took = []
    with grpc.insecure_channel(args.addr) as channel:
        call = channel.unary_unary(args.method)
        for _ in range(args.calls):
            started = time.perf_counter()
            try:
                reply, state = call.with_call(
                    request, timeout=args.timeout, compression=compression
                )
            except grpc.RpcError as err:
                out["code"] = err.code().value[0]
                out["details"] = err.details() or ""
                out["initial"] = metadata(err.initial_metadata())
                break
            took.append(time.perf_counter() - started)
            out["reply"] = reply.hex()
            out["initial"] = metadata(state.initial_metadata())
            out["calls"] += 1
    if took:
        out["p50_us"] = round(statistics.median(took) * 1e6, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
