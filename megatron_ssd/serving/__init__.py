"""Promotion: serve the SSD checkpoint beside the base one behind one OpenAI-compatible endpoint (docs/SERVING.md).

    routing     the modes (shadow, canary, base, ssd) and the stable canary hash of a request's routing key
    upstream    vLLM's own OpenAI server for each checkpoint, as child processes that die with the command
    telemetry   one record per call (checkpoint, mode, latency, tokens, finish reason, answers) and the events
    router      the endpoint in front (Starlette + httpx): routes, falls back to base, attributes every answer
    control     the running router's state file, the mode it resumes with, and mode flips over its admin API
    replay      the run's eval problems sent through the endpoint, tagged with their problem ids
    canary      the telemetry summarised per checkpoint, shadow pairs compared, tagged answers scored in the sandbox

The router never imports vLLM: it talks HTTP to vLLM's servers, which `upstream` starts as separate processes.
"""
