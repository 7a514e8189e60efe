"""Small helpers both daemons use: token auth, systemd notification, request body limits."""
