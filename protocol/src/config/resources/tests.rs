//! Unit tests of resource parsing and matching.
use super::*;

fn gpu(s: &str) -> GpuSpec {
    ResourcesSpec::parse_gpu(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn gpu_tokens_in_any_order() {
    let spec = gpu("80GB:2:A100");
    assert_eq!(spec.name, Some(vec!["A100".to_string()]));
    assert_eq!(spec.count, Range::exact(2));
    assert_eq!(spec.memory, Some(Range::exact(80.0)));
    assert_eq!(spec.vendor, Some(GpuVendor::Nvidia));
    assert_eq!(spec.to_string(), "A100:80GB:2");
}

#[test]
fn gpu_vendor_comes_from_names_or_defaults_to_nvidia() {
    assert_eq!(gpu("MI300X:8").vendor, Some(GpuVendor::Amd));
    assert_eq!(gpu("v5litepod-8").vendor, Some(GpuVendor::Google));
    assert_eq!(gpu("tpu-v4").vendor, Some(GpuVendor::Google));
    assert_eq!(gpu("Gaudi2:8").vendor, Some(GpuVendor::Intel));
    assert_eq!(gpu("n300").vendor, Some(GpuVendor::Tenstorrent));
    assert_eq!(gpu("24GB").vendor, Some(GpuVendor::Nvidia));
    assert_eq!(gpu("H100,MI300X").vendor, None);
    assert_eq!(gpu("0..8").vendor, None);
    assert_eq!(gpu("0").vendor, None);
    assert_eq!(gpu("amd:2").vendor, Some(GpuVendor::Amd));
    assert_eq!(gpu("tt:n150").vendor, Some(GpuVendor::Tenstorrent));
}

#[test]
fn gpu_without_count_means_one_or_more() {
    let spec = gpu("24GB..");
    assert_eq!(spec.count, Range::at_least(1));
    assert_eq!(spec.to_string(), "24GB..:1..");
    assert_eq!(gpu("0").count, Range::exact(0));
}

#[test]
fn gpu_nonsense_is_explained() {
    let err = |s: &str| ResourcesSpec::parse_gpu(s).expect_err(s);
    assert_eq!(err("A100:0GB"), "\"A100:0GB\" memory must be positive");
    assert_eq!(err("A100:2:4"), "\"A100:2:4\" has two counts");
    assert!(err("nvidai:A100").contains("two GPU name lists"));
    assert_eq!(err("nvidia:amd"), "\"nvidia:amd\" has two vendors");
    assert!(err("A100::2").contains("empty token"));
    assert!(err("8..2").contains("minimum is above the maximum"));
    assert!(err("..").contains("is not a range"));
}

#[test]
fn sizes_are_gigabytes() {
    assert_eq!(parse_size("512MB"), Ok(0.5));
    assert_eq!(parse_size("1.5TB"), Ok(1536.0));
    assert_eq!(parse_size("8"), Ok(8.0));
    assert_eq!(parse_size(" 8 GB "), Ok(8.0));
    assert!(parse_size("8XB").is_err());
    assert!(parse_size("-1GB").is_err());
    assert!(parse_size("inf").is_err());
    assert_eq!(
        parse_size_range("16GB..80GB"),
        Ok(Range::new(Some(16.0), Some(80.0)))
    );
    assert_eq!(
        parse_size_range("..1TB"),
        Ok(Range::new(None, Some(1024.0)))
    );
}

#[test]
fn cpu_spec_has_optional_arch() {
    let spec = ResourcesSpec::parse_cpu("x86:96..").expect("cpu");
    assert_eq!(spec.arch, Some(CpuArch::X86));
    assert_eq!(spec.count, Range::at_least(96));
    assert_eq!(spec.to_string(), "x86:96..");
    assert_eq!(
        ResourcesSpec::parse_cpu("8").expect("cpu").count,
        Range::exact(8)
    );
    assert!(ResourcesSpec::parse_cpu("sparc:8").is_err());
}

#[test]
fn ranges_contain_inclusively() {
    let range = Range::new(Some(2), Some(4));
    assert!(range.contains(2) && range.contains(4) && !range.contains(5));
    assert!(Range::at_least(2).contains(1000));
    assert!(Range::new(None, Some(3)).contains(0));
}

#[test]
fn default_resources_print_in_the_grammar() {
    assert_eq!(
        ResourcesSpec::default().to_string(),
        "cpu=2.. mem=8GB.. disk=100GB.. gpu=0.."
    );
    assert!(!ResourcesSpec::default().is_cpu_only());
}
