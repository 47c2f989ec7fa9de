//! Fleet maintenance (SPEC sections 4 and 5) as a table with fixed clocks: `nodes.min` kept,
//! idle instances trimmed above `nodes.max` and terminated after `idle_duration`, provisioning
//! and unreachable timeouts, and SSH hosts never terminated.

#[path = "support/scheduler.rs"]
mod support;

use flotilla_daemon::scheduler::{
    plan_fleet, FleetAction, FleetView, InstanceSlot, InstanceTerminationReason as Why,
};
use flotilla_protocol::model::InstanceStatus;
use flotilla_protocol::Timestamp;
use support::*;

const T0: Timestamp = Timestamp(1_700_000_000_000);
const MIN: u64 = 60;
const HOUR: u64 = 3600;

fn at(secs: u64) -> Timestamp {
    T0.plus_secs(secs)
}

/// Instance `id`, created at T0, idle since `idle_secs` after T0.
fn idle(id: u64, idle_secs: u64) -> InstanceSlot {
    let mut i = instance(id, &format!("i-{id}"), machine(8, 64.0, "A100", 1), 1, 1.0);
    i.created_at = T0;
    i.idle_since = Some(at(idle_secs));
    i
}

fn running(id: u64) -> InstanceSlot {
    let mut i = busy(idle(id, 0), 1);
    i.idle_since = None;
    i
}

fn provisioning(id: u64) -> InstanceSlot {
    let mut i = idle(id, 0);
    i.status = InstanceStatus::Provisioning;
    i.idle_since = None;
    i
}

fn term(id: u64, reason: Why) -> FleetAction {
    FleetAction::Terminate {
        instance_id: id,
        instance: format!("i-{id}"),
        reason,
    }
}

fn provision(fleet: &str, count: u32) -> FleetAction {
    FleetAction::Provision {
        fleet: fleet.to_string(),
        count,
    }
}

struct Case {
    name: &'static str,
    fleet: FleetView,
    now: Timestamp,
    expect: Vec<FleetAction>,
}

#[test]
fn fleet_maintenance() {
    let cloud = |nodes: &str, extra: &str, instances| cloud_fleet("pool", nodes, extra, instances);
    let cases = vec![
        Case {
            name: "nodes.min is kept: the missing instances are provisioned",
            fleet: cloud("2..4", "", vec![idle(1, 0)]),
            now: at(MIN),
            expect: vec![provision("pool", 1)],
        },
        Case {
            name: "an instance idle past idle_duration is terminated",
            fleet: cloud("0..4", "idle_duration: 1h\n", vec![idle(1, 0), running(2)]),
            now: at(2 * HOUR),
            expect: vec![term(1, Why::IdleTimeout)],
        },
        Case {
            name: "idle, but not for idle_duration yet",
            fleet: cloud("0..4", "idle_duration: 1h\n", vec![idle(1, 90 * MIN)]),
            now: at(2 * HOUR),
            expect: vec![],
        },
        Case {
            name: "a fleet at nodes.min keeps its idle instance",
            fleet: cloud("1..4", "idle_duration: 1h\n", vec![idle(1, 0)]),
            now: at(10 * HOUR),
            expect: vec![],
        },
        Case {
            name: "above nodes.min only the surplus goes, the longest idle first",
            fleet: cloud(
                "1..4",
                "idle_duration: 1h\n",
                vec![idle(1, 2 * HOUR), idle(2, 0), idle(3, HOUR)],
            ),
            now: at(10 * HOUR),
            expect: vec![term(2, Why::IdleTimeout), term(3, Why::IdleTimeout)],
        },
        Case {
            name: "busy instances are never idle-terminated",
            fleet: cloud("0..4", "idle_duration: 1h\n", vec![running(1)]),
            now: at(10 * HOUR),
            expect: vec![],
        },
        Case {
            name: "the run's lower idle_duration wins",
            fleet: cloud(
                "0..4",
                "idle_duration: 1h\n",
                vec![{
                    let mut i = idle(1, 0);
                    i.idle_duration = Some(5 * MIN);
                    i
                }],
            ),
            now: at(10 * MIN),
            expect: vec![term(1, Why::IdleTimeout)],
        },
        Case {
            name: "idle_duration off keeps idle instances",
            fleet: cloud("0..4", "idle_duration: off\n", vec![idle(1, 0)]),
            now: at(1000 * HOUR),
            expect: vec![],
        },
        Case {
            name: "idle instances above nodes.max are trimmed",
            fleet: cloud(
                "0..2",
                "idle_duration: off\n",
                vec![running(1), idle(2, HOUR), idle(3, 0), running(4)],
            ),
            now: at(2 * HOUR),
            expect: vec![
                term(3, Why::MaxInstancesLimit),
                term(2, Why::MaxInstancesLimit),
            ],
        },
        Case {
            name: "provisioning past 10 minutes times out, and nodes.min is made up",
            fleet: cloud("1..2", "", vec![provisioning(1)]),
            now: at(11 * MIN),
            expect: vec![term(1, Why::ProvisioningTimeout), provision("pool", 1)],
        },
        Case {
            name: "provisioning for 9 minutes is fine",
            fleet: cloud("1..2", "", vec![provisioning(1)]),
            now: at(9 * MIN),
            expect: vec![],
        },
        Case {
            name: "a cloud instance unreachable for 20 minutes is terminated",
            fleet: cloud(
                "0..2",
                "",
                vec![{
                    let mut i = running(1);
                    i.unreachable = true;
                    i.unreachable_since = Some(at(HOUR));
                    i
                }],
            ),
            now: at(HOUR + 20 * MIN),
            expect: vec![term(1, Why::Unreachable)],
        },
        Case {
            name: "unreachable for 19 minutes is kept",
            fleet: cloud(
                "0..2",
                "",
                vec![{
                    let mut i = running(1);
                    i.unreachable = true;
                    i.unreachable_since = Some(at(HOUR));
                    i
                }],
            ),
            now: at(HOUR + 19 * MIN),
            expect: vec![],
        },
        Case {
            name: "SSH hosts are never terminated, however long idle or unreachable",
            fleet: ssh_fleet(
                "hosts",
                vec![idle(1, 0), {
                    let mut i = idle(2, 0);
                    i.unreachable = true;
                    i.unreachable_since = Some(T0);
                    i
                }],
            ),
            now: at(1000 * HOUR),
            expect: vec![],
        },
        Case {
            name: "an SSH host stuck provisioning is released, not terminated",
            fleet: ssh_fleet("hosts", vec![provisioning(1)]),
            now: at(HOUR),
            expect: vec![FleetAction::Release {
                instance_id: 1,
                instance: "i-1".into(),
                reason: Why::ProvisioningTimeout,
            }],
        },
        Case {
            name: "the local fleet needs nothing",
            fleet: local_fleet(vec![idle(1, 0)]),
            now: at(1000 * HOUR),
            expect: vec![],
        },
    ];
    for case in cases {
        assert_eq!(
            plan_fleet(&case.fleet, case.now),
            case.expect,
            "{}",
            case.name
        );
    }
}

#[test]
fn termination_reasons_read_as_dstack_writes_them() {
    let names: Vec<&str> = [
        Why::IdleTimeout,
        Why::ProvisioningTimeout,
        Why::Unreachable,
        Why::MaxInstancesLimit,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "idle_timeout",
            "provisioning_timeout",
            "unreachable",
            "max_instances_limit"
        ]
    );
}
