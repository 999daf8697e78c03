"""grpc's interop cases status_code_and_message and custom_metadata, sent by Python grpcio to a
`testbed serve --interop` port; the test in tests/interop.rs judges what this prints.

The messages are generated from the vendored proto/grpc/testing/messages.proto with grpcio-tools
into --out at each run (as the top-level module messages_pb2, so that nothing shadows grpcio's own
`grpc` package), and the calls go through grpcio's generic multicallables, so no service stub is
needed.

Usage: interop_client.py --addr HOST:PORT --protos DIR --out DIR --message TEXT [--message ...]
Prints one JSON object per line: for each status message, the unary and full-duplex status
(code number and message as grpcio decoded them), then custom_metadata for both call kinds
(initial and trailing metadata; -bin values as hex of the decoded bytes).
"""

import argparse
import importlib
import json
import sys

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING_BIN = "x-grpc-test-echo-trailing-bin"
UNARY = "/grpc.testing.TestService/UnaryCall"
FULL_DUPLEX = "/grpc.testing.TestService/FullDuplexCall"


def load_messages(protos, out):
    from grpc_tools import protoc

    args = ["protoc", f"-I{protos}/grpc/testing", f"--python_out={out}", "messages.proto"]
    if protoc.main(args) != 0:
        sys.exit("grpc_tools.protoc failed on messages.proto")
    sys.path.insert(0, out)
    return importlib.import_module("messages_pb2")


def metadata_json(metadata):
    return {
        key: value.hex() if isinstance(value, bytes) else value
        for key, value in (metadata or ())
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--protos", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--message", action="append", required=True)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()

    import grpc

    pb = load_messages(args.protos, args.out)
    channel = grpc.insecure_channel(args.addr)
    unary = channel.unary_unary(
        UNARY,
        request_serializer=pb.SimpleRequest.SerializeToString,
        response_deserializer=pb.SimpleResponse.FromString,
    )
    duplex = channel.stream_stream(
        FULL_DUPLEX,
        request_serializer=pb.StreamingOutputCallRequest.SerializeToString,
        response_deserializer=pb.StreamingOutputCallResponse.FromString,
    )

    for message in args.message:
        status = pb.EchoStatus(code=2, message=message)
        try:
            unary(pb.SimpleRequest(response_status=status), timeout=args.timeout)
            print(json.dumps({"case": "status/unary", "sent": message, "code": 0}))
        except grpc.RpcError as err:
            print(json.dumps({"case": "status/unary", "sent": message,
                              "code": err.code().value[0], "message": err.details()}))
        call = duplex(iter([pb.StreamingOutputCallRequest(response_status=status)]),
                      timeout=args.timeout)
        try:
            replies = sum(1 for _ in call)
            print(json.dumps({"case": "status/full_duplex", "sent": message, "code": 0,
                              "replies": replies}))
        except grpc.RpcError as err:
            print(json.dumps({"case": "status/full_duplex", "sent": message,
                              "code": err.code().value[0], "message": err.details()}))

    metadata = (
        (ECHO_INITIAL, "test_initial_metadata_value"),
        (ECHO_TRAILING_BIN, b"\xab\xab\xab"),
    )
    payload = pb.Payload(body=bytes(271828))
    reply, call = unary.with_call(
        pb.SimpleRequest(response_size=314159, payload=payload),
        metadata=metadata,
        timeout=args.timeout,
    )
    print(json.dumps({
        "case": "metadata/unary",
        "code": call.code().value[0],
        "payload_bytes": len(reply.payload.body),
        "initial": metadata_json(call.initial_metadata()),
        "trailing": metadata_json(call.trailing_metadata()),
    }))
    request = pb.StreamingOutputCallRequest(
        response_parameters=[pb.ResponseParameters(size=314159)], payload=payload
    )
    call = duplex(iter([request]), metadata=metadata, timeout=args.timeout)
    sizes = [len(r.payload.body) for r in call]
    print(json.dumps({
        "case": "metadata/full_duplex",
        "code": call.code().value[0],
        "payload_bytes": sizes,
        "initial": metadata_json(call.initial_metadata()),
        "trailing": metadata_json(call.trailing_metadata()),
    }))


if __name__ == "__main__":
    main()
