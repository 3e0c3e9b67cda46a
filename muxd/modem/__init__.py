"""One modem port: AT session, init, identity, receive path."""
