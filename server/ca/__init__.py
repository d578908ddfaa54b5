"""The Connect CA: certificate crypto, the primary's root bootstrap and rotation, and the
secondary's intermediate."""
