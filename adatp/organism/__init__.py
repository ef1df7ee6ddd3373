"""adatp-tiny: the built-in default video LLM assembled from real pretrained parts shipped on PyPI."""
