"""What the tests and the bench share, in one place (neither imports the other):

hub_server    the one launcher of `hub serving start`: its config, start, wait for /ready, stop
              of the whole process group, and installing the hub modules into a HUB_HOME
ports         free loopback ports
payloads      the shared images, base64, and hand-made hostile files
process_stats CPU and memory of a server's process group, and the RSS trend report
wrk           wrk driving a server, with the server's CPU per image
milvus_server a standalone Milvus Lite server (`python -m harness.milvus_server`)
paddleclas_reference, paddleclas_worker
              PaddleClas 2.6.0 itself in its own venv, the reference for accuracy and speed
"""
