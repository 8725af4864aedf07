"""The hub layout, dataset cards and publishing."""
