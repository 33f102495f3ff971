"""The gateway's routers: thin functions that check the caller and hand over to the service modules."""
