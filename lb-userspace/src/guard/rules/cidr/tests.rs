use super::*;

#[test]
fn cidrs_parse_strictly_and_name_what_is_wrong() {
    let c: Cidr = "198.18.66.0/24".parse().unwrap();
    assert_eq!(c.to_string(), "198.18.66.0/24");
    assert_eq!("198.18.66.7".parse::<Cidr>().unwrap().len, 32);
    assert_eq!("2001:2:66::/48".parse::<Cidr>().unwrap().len, 48);
    assert_eq!("2001:2::1".parse::<Cidr>().unwrap().len, 128);
    assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().len, 0);
    let err = |s: &str| s.parse::<Cidr>().unwrap_err().to_string();
    assert!(err("198.18.66.7/24").contains("host bits set: the prefix is 198.18.66.0/24"));
    assert!(err("198.18.66.0/33").contains("longer than the address (32 bits)"));
    assert!(err("2001:2::/129").contains("128 bits"));
    for bad in [
        "",
        "nope",
        "198.18.66.0/",
        "198.18.66.0/x",
        "198.18.300.0/24",
        "/24",
    ] {
        assert!(
            err(bad).contains("is not a CIDR prefix"),
            "{bad}: {}",
            err(bad)
        );
    }
}
