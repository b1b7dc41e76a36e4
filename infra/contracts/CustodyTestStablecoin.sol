// SPDX-License-Identifier: MIT
// The local stack's test stablecoin: OpenZeppelin's ERC20PresetMinterPauser with the
// 6 decimals real stablecoins use (the preset itself is fixed at 18).
pragma solidity 0.8.24;

import "@openzeppelin/contracts/token/ERC20/presets/ERC20PresetMinterPauser.sol";

contract CustodyTestStablecoin is ERC20PresetMinterPauser {
    constructor() ERC20PresetMinterPauser("Custody Test USD", "CTUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
