package stm32uart

// device is what the driver needs to know about a part, by the product ID
// Get ID returns (values from ST's AN2606).
type device struct {
	name      string
	pageSize  uint32 // erase unit of the bootloader's erase commands
	flashSize uint32 // bytes; the most any part of the line has
	// sectors: flash is in sectors of unequal size, which the page
	// arithmetic here cannot address.
	sectors bool
}

// flashBase is where every STM32 with this bootloader maps its main
// flash, and where Reset starts the firmware.
const flashBase = 0x08000000

// devices lists parts with uniform pages, and the sector-based families
// (F2, F4, F7) so that they are refused rather than mis-erased.
var devices = map[uint16]device{
	// F0
	0x440: {name: "STM32F030x8/F05xxx", pageSize: 1 << 10, flashSize: 64 << 10},
	0x442: {name: "STM32F030xC/F09xxx", pageSize: 2 << 10, flashSize: 256 << 10},
	0x444: {name: "STM32F03xx4/6", pageSize: 1 << 10, flashSize: 32 << 10},
	0x445: {name: "STM32F04xxx/F070x6", pageSize: 1 << 10, flashSize: 32 << 10},
	0x448: {name: "STM32F070xB/F071xx/F72xx", pageSize: 2 << 10, flashSize: 128 << 10},
	// F1
	0x412: {name: "STM32F10xxx low-density", pageSize: 1 << 10, flashSize: 32 << 10},
	0x410: {name: "STM32F10xxx medium-density", pageSize: 1 << 10, flashSize: 128 << 10},
	0x414: {name: "STM32F10xxx high-density", pageSize: 2 << 10, flashSize: 512 << 10},
	0x420: {name: "STM32F10xxx medium-density value line", pageSize: 1 << 10, flashSize: 128 << 10},
	0x428: {name: "STM32F10xxx high-density value line", pageSize: 2 << 10, flashSize: 512 << 10},
	0x418: {name: "STM32F105xx/F107xx", pageSize: 2 << 10, flashSize: 256 << 10},
	0x430: {name: "STM32F10xxx XL-density", pageSize: 2 << 10, flashSize: 1 << 20},
	// F3
	0x432: {name: "STM32F373xx/F378xx", pageSize: 2 << 10, flashSize: 256 << 10},
	0x422: {name: "STM32F302xB(C)/F303xB(C)/F358xx", pageSize: 2 << 10, flashSize: 256 << 10},
	0x439: {name: "STM32F301xx/F302x4(6/8)/F318xx", pageSize: 2 << 10, flashSize: 64 << 10},
	0x438: {name: "STM32F303x4(6/8)/F334xx/F328xx", pageSize: 2 << 10, flashSize: 64 << 10},
	0x446: {name: "STM32F302xD(E)/F303xD(E)/F398xx", pageSize: 2 << 10, flashSize: 512 << 10},
	// L0, L1, L4
	0x425: {name: "STM32L031xx/041xx", pageSize: 128, flashSize: 32 << 10},
	0x417: {name: "STM32L05xxx/06xxx", pageSize: 128, flashSize: 64 << 10},
	0x447: {name: "STM32L07xxx/08xxx", pageSize: 128, flashSize: 192 << 10},
	0x416: {name: "STM32L1xxx6(8/B)", pageSize: 256, flashSize: 128 << 10},
	0x429: {name: "STM32L1xxx6(8/B)A", pageSize: 256, flashSize: 128 << 10},
	0x427: {name: "STM32L1xxxC", pageSize: 256, flashSize: 256 << 10},
	0x436: {name: "STM32L1xxxD", pageSize: 256, flashSize: 384 << 10},
	0x437: {name: "STM32L1xxxE", pageSize: 256, flashSize: 512 << 10},
	0x415: {name: "STM32L476xx/486xx", pageSize: 2 << 10, flashSize: 1 << 20},
	// Sector-based.
	0x411: {name: "STM32F2xxxx", sectors: true},
	0x413: {name: "STM32F40xxx/41xxx", sectors: true},
	0x419: {name: "STM32F42xxx/43xxx", sectors: true},
	0x423: {name: "STM32F401xB(C)", sectors: true},
	0x433: {name: "STM32F401xD(E)", sectors: true},
	0x458: {name: "STM32F410xx", sectors: true},
	0x431: {name: "STM32F411xx", sectors: true},
	0x421: {name: "STM32F446xx", sectors: true},
	0x434: {name: "STM32F469xx", sectors: true},
	0x449: {name: "STM32F74xxx/75xxx", sectors: true},
}
