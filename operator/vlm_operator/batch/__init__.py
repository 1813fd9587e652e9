"""VLMBatchJob: offline multimodal generation."""
