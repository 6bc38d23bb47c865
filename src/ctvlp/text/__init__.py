"""Report text: decoding, sections, disease labels and prompts, and image-reference mining."""
