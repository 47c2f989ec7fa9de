//! The resources grammar reads back what it prints: `parse(print(x)) == x`.

use flotilla_protocol::config::{
    parse_count_range, parse_size_range, CpuArch, CpuSpec, GpuSpec, GpuVendor, Range, ResourcesSpec,
};
use proptest::prelude::*;

fn count_range() -> impl Strategy<Value = Range<u32>> {
    (any::<Option<u16>>(), any::<Option<u16>>())
        .prop_filter("a bare `..` is not a range", |(a, b)| {
            a.is_some() || b.is_some()
        })
        .prop_map(|(a, b)| {
            let (a, b) = (a.map(u32::from), b.map(u32::from));
            match (a, b) {
                (Some(x), Some(y)) if x > y => Range::new(Some(y), Some(x)),
                _ => Range::new(a, b),
            }
        })
}

/// Positive sizes in GB, from fractions of a GB to petabytes.
fn size() -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u32..1_000_000).prop_map(f64::from),
        (1u32..1_000_000).prop_map(|n| f64::from(n) / 1024.0),
        1e-3f64..1e7,
    ]
}

fn size_range() -> impl Strategy<Value = Range<f64>> {
    (proptest::option::of(size()), proptest::option::of(size()))
        .prop_filter("a bare `..` is not a range", |(a, b)| {
            a.is_some() || b.is_some()
        })
        .prop_map(|(a, b)| match (a, b) {
            (Some(x), Some(y)) if x > y => Range::new(Some(y), Some(x)),
            _ => Range::new(a, b),
        })
}

fn gpu_name() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "A100",
        "H100",
        "H200",
        "L40S",
        "RTX4090",
        "MI300X",
        "v5litepod-8",
        "Gaudi2",
        "n150",
        "T4",
    ])
    .prop_map(str::to_string);
    let invented = "[A-Za-z][A-Za-z0-9-]{0,8}".prop_filter("not a vendor word", |name| {
        name.parse::<GpuVendor>().is_err()
    });
    prop_oneof![known, invented]
}

fn vendor() -> impl Strategy<Value = GpuVendor> {
    prop::sample::select(vec![
        GpuVendor::Nvidia,
        GpuVendor::Amd,
        GpuVendor::Google,
        GpuVendor::Intel,
        GpuVendor::Tenstorrent,
    ])
}

/// Specs the token grammar can express, with the vendor filled in as parsing fills it.
fn gpu_spec() -> impl Strategy<Value = GpuSpec> {
    (
        proptest::option::of(vendor()),
        proptest::option::of(prop::collection::vec(gpu_name(), 1..4)),
        count_range(),
        proptest::option::of(size_range()),
    )
        .prop_map(|(vendor, name, count, memory)| {
            GpuSpec {
                vendor,
                name,
                count,
                memory,
                total_memory: None,
                compute_capability: None,
            }
            .with_implied_vendor()
        })
}

proptest! {
    #[test]
    fn count_ranges_read_back(range in count_range()) {
        prop_assert_eq!(parse_count_range(&range.to_string()), Ok(range));
    }

    #[test]
    fn size_ranges_read_back(range in size_range()) {
        prop_assert_eq!(parse_size_range(&range.to_string()), Ok(range));
        prop_assert_eq!(ResourcesSpec::parse_size_range(&range.to_string()), Ok(range));
    }

    #[test]
    fn cpu_specs_read_back(
        arch in proptest::option::of(prop::sample::select(vec![CpuArch::X86, CpuArch::Arm])),
        count in count_range(),
    ) {
        let spec = CpuSpec { arch, count };
        prop_assert_eq!(ResourcesSpec::parse_cpu(&spec.to_string()), Ok(spec));
    }

    #[test]
    fn gpu_specs_read_back(spec in gpu_spec()) {
        let printed = spec.to_string();
        prop_assert_eq!(ResourcesSpec::parse_gpu(&printed), Ok(spec), "printed as {}", printed);
    }

    #[test]
    fn gpu_tokens_may_come_in_any_order(spec in gpu_spec(), rotation in 0usize..4) {
        let printed = spec.to_string();
        let mut tokens: Vec<&str> = printed.split(':').collect();
        let len = tokens.len();
        tokens.rotate_left(rotation % len);
        prop_assert_eq!(ResourcesSpec::parse_gpu(&tokens.join(":")), Ok(spec));
    }

    #[test]
    fn ranges_contain_their_bounds(range in count_range(), probe in any::<u16>()) {
        let probe = u32::from(probe);
        let expected = range.min.is_none_or(|min| probe >= min) && range.max.is_none_or(|max| probe <= max);
        prop_assert_eq!(range.contains(probe), expected);
        if let Some(min) = range.min {
            prop_assert!(range.contains(min));
        }
    }
}

#[test]
fn grammar_prints_the_documented_forms() {
    let spec = |s: &str| ResourcesSpec::parse_gpu(s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec("A100:80GB:2").to_string(), "A100:80GB:2");
    assert_eq!(spec("24GB..:1..").to_string(), "24GB..:1..");
    assert_eq!(spec("amd:MI300X:8").to_string(), "MI300X:8");
    assert_eq!(spec("amd:2").to_string(), "amd:2");
    assert_eq!(spec("0").to_string(), "0");
    assert_eq!(Range::at_least(2u32).to_string(), "2..");
    assert_eq!(Range::at_least(8.0).to_string(), "8GB..");
    assert_eq!(
        parse_size_range("512MB").map(|r| r.to_string()),
        Ok("0.5GB".to_string())
    );
}
