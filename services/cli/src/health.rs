//! "Is the group healthy?": the decision behind `redis-ha wait` (which `deploy/up.sh` uses).
//! Healthy means the clients have somewhere to go and a failover has somewhere to go: a master
//! that its own agent confirms, and the wanted number of replicas with their link up.

use std::fmt;

use crate::model::StatusJson;

/// What healthy means for `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goal {
    /// Replicas whose link to the master must be up.
    pub replicas: usize,
}

/// A healthy group, as `wait` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthy {
    /// `127.0.0.1:9001 (node-1, confirmed)`.
    pub master: String,
    pub replicas_linked: usize,
}

impl fmt::Display for Healthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "master {}, {} replica(s) linked",
            self.master, self.replicas_linked
        )
    }
}

/// Why a group is not healthy yet (the first reason found, in this order).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("no master")]
    NoMaster,
    #[error("master {master} not confirmed yet: {why}")]
    Unconfirmed { master: String, why: String },
    #[error("{linked} of {wanted} replica(s) linked to the master")]
    Replicas { linked: usize, wanted: usize },
}

/// Whether `s` meets `goal`.
pub fn assess(s: &StatusJson, goal: Goal) -> Result<Healthy, Unhealthy> {
    let Some(m) = &s.master else {
        return Err(Unhealthy::NoMaster);
    };
    if !s.summary.master_confirmed {
        return Err(Unhealthy::Unconfirmed {
            master: m.address.clone(),
            why: crate::render::unconfirmed_phrase(
                m.unconfirmed
                    .as_deref()
                    .unwrap_or(redis_ha_proto::unconfirmed::OWN_AGENT),
            ),
        });
    }
    let linked = s.summary.replicas_link_up;
    if linked < goal.replicas {
        return Err(Unhealthy::Replicas {
            linked,
            wanted: goal.replicas,
        });
    }
    Ok(Healthy {
        master: crate::render::master_phrase(s),
        replicas_linked: linked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample_topology;
    use redis_ha_proto::v1::{Health, LinkState, Role, Topology};

    const TWO: Goal = Goal { replicas: 2 };

    fn assess_t(t: &Topology, goal: Goal) -> Result<Healthy, Unhealthy> {
        assess(&StatusJson::from(t), goal)
    }

    #[test]
    fn confirmed_master_and_linked_replicas_is_healthy() {
        let h = assess_t(&sample_topology(), TWO).unwrap();
        assert_eq!(h.master, "127.0.0.1:9001 (node-1, confirmed)");
        assert_eq!(h.replicas_linked, 2);
        assert_eq!(
            h.to_string(),
            "master 127.0.0.1:9001 (node-1, confirmed), 2 replica(s) linked"
        );
        // More replicas than asked for is fine; none asked for needs only the master.
        assert!(assess_t(&sample_topology(), Goal { replicas: 1 }).is_ok());
        assert!(assess_t(&sample_topology(), Goal { replicas: 0 }).is_ok());
    }

    #[test]
    fn no_master_comes_first() {
        let mut t = sample_topology();
        t.master_address.clear();
        t.master_confirmed = false;
        t.nodes[1].link = LinkState::Down as i32;
        assert_eq!(assess_t(&t, TWO), Err(Unhealthy::NoMaster));
        assert_eq!(Unhealthy::NoMaster.to_string(), "no master");
    }

    #[test]
    fn an_unconfirmed_master_is_not_healthy() {
        let mut t = sample_topology();
        t.master_confirmed = false;
        t.master_unconfirmed = "own-agent".into();
        let e = assess_t(&t, TWO).unwrap_err();
        assert_eq!(
            e.to_string(),
            "master 127.0.0.1:9001 not confirmed yet: its own agent does not report it up as master"
        );
        t.master_unconfirmed = "agents-lost".into();
        let e = assess_t(&t, TWO).unwrap_err();
        assert!(e.to_string().contains("hears too few agents"), "{e}");
    }

    #[test]
    fn replicas_count_only_with_their_link_up() {
        let mut t = sample_topology();
        t.nodes[2].link = LinkState::Down as i32;
        let e = assess_t(&t, TWO).unwrap_err();
        assert_eq!(
            e,
            Unhealthy::Replicas {
                linked: 1,
                wanted: 2
            }
        );
        assert_eq!(e.to_string(), "1 of 2 replica(s) linked to the master");
        assert!(assess_t(&t, Goal { replicas: 1 }).is_ok());

        // A node that says master (split brain) is no linked replica.
        let mut t = sample_topology();
        t.nodes[1].role = Role::Master as i32;
        t.nodes[1].health = Health::Up as i32;
        assert_eq!(
            assess_t(&t, TWO),
            Err(Unhealthy::Replicas {
                linked: 1,
                wanted: 2
            })
        );
        // Nobody reported yet: nothing at all.
        assert_eq!(
            assess_t(&Topology::default(), TWO),
            Err(Unhealthy::NoMaster)
        );
    }

    #[test]
    fn more_replicas_wanted_than_exist() {
        let e = assess_t(&sample_topology(), Goal { replicas: 3 }).unwrap_err();
        assert_eq!(
            e,
            Unhealthy::Replicas {
                linked: 2,
                wanted: 3
            }
        );
    }
}
