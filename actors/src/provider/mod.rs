//! Provider actors and their supervisor.

mod actor;
mod hang;
mod replicas;
pub mod restart;
mod supervisor;
mod warmup;

pub use actor::{ProviderActor, ProviderArgs, ProviderMsg};
pub use supervisor::{ProviderSupervisor, SupervisorArgs, SupervisorMsg};
