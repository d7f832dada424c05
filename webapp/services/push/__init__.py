"""Push: watchers hold IMAP IDLE connections and ring the fetch bell when mail arrives."""
