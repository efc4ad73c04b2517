"""opencampaign: a self-hostable campaign platform with an Adobe Campaign compatible API layer."""

__version__ = "0.1.0"
