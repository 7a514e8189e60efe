"""The controller API's routers, one per concern; controller.api.app includes them all."""
