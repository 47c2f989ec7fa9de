//! Bottom layer, store: fleets and their instances. An instance's status changes are recorded as
//! events.

use super::events::EventDraft;
use super::{be, decode, encode, Result, Store};
use flotilla_protocol::model::{Event, Fleet, Instance};

impl Store {
    // ---- fleets and instances ----

    pub fn put_fleet(&self, fleet: &Fleet) -> Result<()> {
        self.writing(|| {
            let mut bare = fleet.clone();
            bare.instances.clear();
            self.fleets.insert(fleet.name.as_bytes(), encode(&bare))?;
            Ok(())
        })
    }

    pub fn get_fleet(&self, name: &str) -> Result<Option<Fleet>> {
        match self.fleets.get(name.as_bytes())? {
            Some(v) => {
                let mut f: Fleet = decode("fleets", &v)?;
                f.instances = self
                    .list_instances()?
                    .into_iter()
                    .filter(|i| i.fleet == f.name)
                    .collect();
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    /// Fleets by name, each with its instances.
    pub fn list_fleets(&self) -> Result<Vec<Fleet>> {
        let instances = self.list_instances()?;
        let mut out = Vec::new();
        for kv in self.fleets.iter() {
            let (_, v) = kv?;
            let mut f: Fleet = decode("fleets", &v)?;
            f.instances = instances
                .iter()
                .filter(|i| i.fleet == f.name)
                .cloned()
                .collect();
            out.push(f);
        }
        Ok(out)
    }

    pub fn list_instances(&self) -> Result<Vec<Instance>> {
        self.instances
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("instances", &v)
            })
            .collect()
    }

    pub fn get_instance(&self, id: u64) -> Result<Option<Instance>> {
        match self.instances.get(be(id))? {
            Some(v) => Ok(Some(decode("instances", &v)?)),
            None => Ok(None),
        }
    }

    /// Writes an instance, with an event when its status or reachability changed.
    pub fn put_instance(&self, inst: &Instance) -> Result<Vec<Event>> {
        self.writing(|| {
            let _g = self.lock();
            let old = self.get_instance(inst.id)?;
            let mut drafts = Vec::new();
            let old_status = old.as_ref().map(|o| o.status);
            if old_status != Some(inst.status)
                || old.as_ref().map(|o| o.unreachable) != Some(inst.unreachable)
            {
                drafts.push(EventDraft {
                    kind: "instance",
                    resource: format!("{}/{}", inst.fleet, inst.name),
                    old_status: old_status.map(|s| s.to_string()),
                    new_status: Some(inst.status.to_string()),
                    reason: inst.termination_reason.clone(),
                    message: if inst.unreachable {
                        Some("unreachable".into())
                    } else {
                        inst.error.clone()
                    },
                });
            }
            self.instances.insert(be(inst.id), encode(inst))?;
            self.append_events_locked(drafts)
        })
    }

    /// Removes an instance record (its host is released, not touched).
    pub fn delete_instance(&self, inst: &Instance, reason: &str) -> Result<Vec<Event>> {
        self.writing(|| {
            let _g = self.lock();
            self.instances.remove(be(inst.id))?;
            self.append_events_locked(vec![EventDraft {
                kind: "instance",
                resource: format!("{}/{}", inst.fleet, inst.name),
                old_status: Some(inst.status.to_string()),
                new_status: Some("terminated".into()),
                reason: Some(reason.to_string()),
                message: None,
            }])
        })
    }

    /// Removes a fleet record (its instances first, with [`Store::delete_instance`]).
    pub fn delete_fleet(&self, name: &str) -> Result<Vec<Event>> {
        self.writing(|| {
            let _g = self.lock();
            self.fleets.remove(name.as_bytes())?;
            self.append_events_locked(vec![EventDraft {
                kind: "fleet",
                resource: name.to_string(),
                old_status: Some("active".into()),
                new_status: Some("terminated".into()),
                reason: Some("deleted".into()),
                message: None,
            }])
        })
    }
}
