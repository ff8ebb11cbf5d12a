"""Configuration: `schema` (the Structs), `env` (.env and variables), `load` (validation)."""

from circuitd.config.env import environment, read_dotenv
from circuitd.config.load import (
    ConfigError,
    ConfigSource,
    config_path_from,
    load_config,
)
from circuitd.config.schema import (
    ENV_PROVIDERS,
    PROVIDER_KINDS,
    Config,
    DeploymentConfig,
    KeyConfig,
    LimitsConfig,
    MockConfig,
    ModelConfig,
    PassthroughConfig,
    PricingConfig,
    ProviderConfig,
    ProviderKind,
    ServerConfig,
    StoreConfig,
    UpstreamConfig,
)

__all__ = [
    "ENV_PROVIDERS",
    "PROVIDER_KINDS",
    "Config",
    "ConfigError",
    "ConfigSource",
    "DeploymentConfig",
    "KeyConfig",
    "LimitsConfig",
    "MockConfig",
    "ModelConfig",
    "PassthroughConfig",
    "PricingConfig",
    "ProviderConfig",
    "ProviderKind",
    "ServerConfig",
    "StoreConfig",
    "UpstreamConfig",
    "config_path_from",
    "environment",
    "load_config",
    "read_dotenv",
]
