"""Security of members' accounts and money; see SECURITY.md for every protection and the
test that proves it.

| module | what |
|---|---|
| `totp` | TOTP two-factor (RFC 6238, pyotp): secrets sealed with the server key, replay memory, recovery codes |
| `sms` | SMS two-factor: E.164 phones, six-digit codes, the log and Twilio-shaped gateways |
| `throttle` | failed log ins per account and per IP, wrong codes, public forms: counted in the store, lockouts |
| `audit` | the append-only, hash-chained audit log (who, what, when, from which IP) |
| `addresses` | withdrawal address book with a hold, e-mail confirmation of each withdrawal, daily limits |
| `service` | `Security`: the second-factor rules every protected action goes through, plugged into pages and funds |
| `config` | the `[security]` and `[sms]` tables of cluster.toml |

The pages are in node/web/pages/security/. Nothing is imported here: node/wallet/funds.py imports
`node.security.audit` while the exchange itself is being imported.
"""
