"""`seq2seq serve`: a JSON API and a one-page web UI over trained checkpoints.

A thin face over the decoding the CLI uses: `registry` loads the models once, `app` parses and
validates requests, `batcher` queues them and decodes batches in one worker thread, and
`run` binds the port and runs the server until SIGINT or SIGTERM.
"""
