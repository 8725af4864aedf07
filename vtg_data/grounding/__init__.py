"""The science: answer parsing, metrics, rewards, prompts."""
