//! Provider actors and their supervisor.

mod actor;
mod hang;
pub mod restart;
mod supervisor;

pub use actor::{ProviderActor, ProviderArgs, ProviderMsg};
pub use supervisor::{ProviderSupervisor, SupervisorArgs, SupervisorMsg};
