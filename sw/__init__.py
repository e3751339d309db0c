"""TerViT host software: models, quantization, training, the .tvt file, the integer reference, runtime."""
