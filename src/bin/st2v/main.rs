fn main() {
    println!("st2v: under construction");
}
