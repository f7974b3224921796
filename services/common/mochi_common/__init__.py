"""Runtime pieces every service shares: settings loading, logs, NATS, video stores."""
