//! `rename`: a container's new name (docker's rule, refused while another has it).

use super::Container;
use crate::{ContainerConfig, Result};

impl Container<'_> {
    pub fn rename(&mut self, name: &str) -> Result<()> {
        self.store
            .rename_container::<ContainerConfig>(&self.record.id, name)?;
        let old = std::mem::replace(
            &mut self.record.name,
            name.trim_start_matches('/').to_string(),
        );
        self.event("rename", &[("oldName", &format!("/{old}"))]);
        Ok(())
    }
}
