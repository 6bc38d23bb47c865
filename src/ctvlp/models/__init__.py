"""Window encoder (frozen 3D ViT), scan/slice encoder, text encoder with LoRA, projection heads."""
