"""The operators' side of the exchange: roles, the audit of admin actions, balance
corrections with a second admin's approval, and the dashboard's numbers.

Kept free of imports at package level: `node.config` imports `node.admin.conf` while it parses, and
nothing here may pull the exchange in at that moment.
"""
