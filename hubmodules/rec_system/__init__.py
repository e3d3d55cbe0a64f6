"""rec_system: PP-ShiTu recognition (detect, embed, search a live gallery) as a PaddleHub module."""
