"""Python grpcio client of any API, built at run time from a version's descriptors: the
matrix's Python row (`testbed matrix --old ... --new ...`).

The message classes come from the FileDescriptorSet given (google.protobuf's
message_factory, as a Python team's generated `_pb2` modules would define them); each call
goes through grpcio's generic multicallables with those classes' serializers, so requests are
built and replies parsed by Python's protobuf, not by the testbed.

Usage: dynamic_client.py --protoset FILE

Reads one call per line on stdin, a JSON object:
  {"addr": "HOST:PORT", "method": "pkg.Service/Method", "requests": [<protobuf JSON>, ...],
   "timeout": SECONDS, "headers": [["name", "value"], ...], "max_replies": N,
   "max_reply_bytes": N}
and writes one JSON object per call on stdout:
  {"code": <grpc status number>, "message": "...", "served_by": "<x-api-version>" | null,
   "replies": ["<base64 of each reply as Python serialized it>", ...]}
Replies past max_replies (or past max_reply_bytes in all) are not kept; "capped" then says why. A line that is not a call gets {"error": "..."}; the worker keeps serving.
"""

import argparse
import base64
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protoset", required=True)
    return parser.parse_args()


class Client:
    """One version's client: its descriptors, and a channel per server address."""

    def __init__(self, protoset):
        files = descriptor_pb2.FileDescriptorSet()
        with open(protoset, "rb") as f:
            files.ParseFromString(f.read())
        self.pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            self.pool.Add(file)
        self.channels = {}

    def channel(self, addr, max_reply_bytes):
        # No one message past the call's byte cap is taken in (grpcio's own limit is 4 MiB).
        if addr not in self.channels:
            options = [("grpc.max_receive_message_length", max_reply_bytes)]
            self.channels[addr] = grpc.insecure_channel(addr, options=options)
        return self.channels[addr]

    def call(self, command):
        service_name, method_name = command["method"].strip("/").split("/", 1)
        method = self.pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(method.input_type)
        reply_class = message_factory.GetMessageClass(method.output_type)
        requests = [json_format.ParseDict(r, request_class()) for r in command["requests"]]
        kind = ("stream" if method.client_streaming else "unary") + "_" + (
            "stream" if method.server_streaming else "unary"
        )
        channel = self.channel(command["addr"], command["max_reply_bytes"])
        callable_ = getattr(channel, kind)(
            "/" + service_name + "/" + method_name,
            request_serializer=request_class.SerializeToString,
            response_deserializer=reply_class.FromString,
        )
        metadata = [(name.lower(), value) for name, value in command.get("headers", [])]
        timeout = command.get("timeout")
        argument = requests[0] if not method.client_streaming else iter(requests)
        out = {"code": 0, "message": "", "served_by": None, "replies": []}
        caps = (command["max_replies"], command["max_reply_bytes"])
        kept = 0
        try:
            if method.server_streaming:
                call = callable_(argument, timeout=timeout, metadata=metadata)
                for reply in call:
                    if not keep(out, reply, kept, caps):
                        call.cancel()
                        break
                    kept += len(reply.SerializeToString())
                out["served_by"] = served_by(call.initial_metadata())
            else:
                reply, call = callable_.with_call(argument, timeout=timeout, metadata=metadata)
                keep(out, reply, 0, caps)
                out["served_by"] = served_by(call.initial_metadata())
        except grpc.RpcError as error:
            if "capped" not in out:
                out["code"] = error.code().value[0]
                out["message"] = error.details() or ""
                out["served_by"] = out["served_by"] or served_by(error.initial_metadata() or ())
        return out


def keep(out, reply, kept, caps):
    """Adds `reply` to the answer unless a cap is reached (then says so)."""
    max_replies, max_reply_bytes = caps
    if len(out["replies"]) >= max_replies:
        out["capped"] = "more than --max-replies %d" % max_replies
        return False
    # What the caller's code sees: fields its classes do not know (or that came with another
    # wire type, which Python's protobuf sets aside rather than fail) are not part of it.
    reply.DiscardUnknownFields()
    serialized = reply.SerializeToString()
    if kept + len(serialized) > max_reply_bytes:
        out["capped"] = "more than --max-reply-bytes %d" % max_reply_bytes
        return False
    out["replies"].append(base64.b64encode(serialized).decode())
    return True


def served_by(metadata):
    for name, value in metadata or ():
        if name == "x-api-version":
            return value
    return None


def main():
    args = parse_args()
    client = Client(args.protoset)
    for line in sys.stdin:
        try:
            out = client.call(json.loads(line))
        except Exception as error:  # a bad command is answered, and the worker goes on
            out = {"error": "%s: %s" % (type(error).__name__, error)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
