"""The operators' side of the exchange: roles, the audit of admin actions, balance
corrections with a second admin's approval, and the dashboard's numbers. Its `[admin]` table is
parsed with the rest of cluster.toml (node/config/admin.py).
"""
