"""An Incrementer v2 whose descriptors (a FileDescriptorSet file, with google.api.http rules)
are served by gRPC reflection as they were compiled: a third-party reflection server for the
JSON tests, which the gateway must read the rules from.

Usage: annotated_server.py DESCRIPTORS_FILE
"""

import sys
from concurrent import futures


def main():
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_reflection.v1alpha import reflection

    pool = descriptor_pool.Default()
    files = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], "rb").read()).file
    # Added as the bytes they came in (reflection then serves them so), imports first.
    added = set()
    while len(added) < len(files):
        for file in files:
            if file.name in added or any(d not in added for d in file.dependency
                                         if not d.startswith("google/protobuf/")):
                continue
            try:
                pool.FindFileByName(file.name)
            except KeyError:
                pool.AddSerializedFile(file.SerializeToString())
            added.add(file.name)
    request_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("increment.v2.IncrementRequest"))
    reply_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("increment.v2.IncrementReply"))

    def increment(request, context):
        step = request.step if request.HasField("step") else 1
        return reply_type(value=request.value + step, request_id=request.request_id,
                          served_by_version="2.0.0")

    handler = grpc.method_handlers_generic_handler("increment.v2.Incrementer", {
        "Increment": grpc.unary_unary_rpc_method_handler(
            increment, request_deserializer=request_type.FromString,
            response_serializer=reply_type.SerializeToString),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    reflection.enable_server_reflection(("increment.v2.Incrementer", reflection.SERVICE_NAME),
                                        server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"serving the annotated Incrementer on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
