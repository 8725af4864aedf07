"""Training: supervised fine-tuning and GRPO on our datasets, with the video as video."""
