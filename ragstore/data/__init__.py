"""Data in: file readers and chunking, BEIR datasets and the bundled ones."""
