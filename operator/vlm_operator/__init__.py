"""vlm-operator: serve vision-language models on vLLM from a typed VLMDeployment, with a GPU-memory fit check."""

__version__ = "0.1.0"
